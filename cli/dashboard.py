"""`autobatch dashboard`: optuna-dashboard on the study storage, safely launched.

The server runs in this process. A password belongs in $AUTOBATCH_STORAGE, not in
--storage: `ps` shows command lines to every user of the machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.panel import Panel

import autobatch.stop as stop
from autobatch.errors import AutobatchError, ConfigError
from autobatch.report import is_loopback, serve
from autobatch.storage import (
    default_storage_url,
    mask_url,
    open_storage,
    storage_file,
)
from autobatch_cli.output import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    exits_cleanly,
    stderr,
)


def exposure_warning(host: str, port: int) -> Panel:
    return Panel(
        f"optuna-dashboard has [bold]no authentication[/]. Listening on {host}:{port} lets "
        "anyone who can reach this machine read every study and delete trials, notes "
        "and artifacts.\nPrefer the default --host 127.0.0.1 and an SSH tunnel: "
        f"ssh -L {port}:127.0.0.1:{port} THIS_HOST",
        title="WARNING: dashboard reachable from other machines", border_style="bold red")


@exits_cleanly
def dashboard(
    storage: Annotated[Optional[str], typer.Option(help=(
        "Optuna storage URL (default $AUTOBATCH_STORAGE or sqlite:///autobatch.db). With a "
        "password, prefer $AUTOBATCH_STORAGE: `ps` shows command lines to every user."))]
    = None,
    host: Annotated[str, typer.Option(help=(
        "Address to listen on. Anything but loopback exposes the studies without a "
        "password."))] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    artifacts: Annotated[Optional[Path], typer.Option(help=(
        "Artifact folder (default: DB-artifacts beside a SQLite database)."))] = None,
) -> None:
    """Browse the studies in optuna-dashboard (no authentication: loopback by default)."""
    url = storage or default_storage_url()
    db = storage_file(url)
    if db is not None and not db.is_file():
        raise ConfigError(f"no study database at {str(db)!r}; pass --storage or run "
                          "`autobatch tune` first")
    open_storage(url)  # a malformed URL fails here, with a masked message
    if artifacts is not None and not artifacts.is_dir():
        raise ConfigError(f"--artifacts folder {str(artifacts)!r} does not exist")
    if not is_loopback(host):
        stderr.print(exposure_warning(host, port))
    shown = f"[{host}]" if ":" in host else host
    stderr.print(f"optuna-dashboard on {mask_url(url)} at http://{shown}:{port}/ "
                 "(Ctrl-C to stop)", markup=False)
    stop.raise_at_once()  # serve() waits on the server thread: a signal raises there
    try:
        serve(url, host=host, port=port, artifacts=artifacts)
    except KeyboardInterrupt as exc:  # Terminated (SIGTERM) is one
        code = EXIT_TERMINATED if isinstance(exc, stop.Terminated) else EXIT_INTERRUPTED
    except OSError as exc:
        raise AutobatchError(f"cannot serve {mask_url(url)} on {host}:{port}: "
                             f"{exc.strerror or exc}") from None
    else:  # the server ended by itself
        code = 0
    stderr.print(f"dashboard stopped ({'SIGTERM' if code == EXIT_TERMINATED else 'Ctrl-C'})"
                 if code else "dashboard stopped", markup=False)
    raise typer.Exit(code)
