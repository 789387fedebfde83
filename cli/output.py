"""Where output goes: results on stdout, progress and errors on stderr.

rich drops colour and cursor control by itself when the stream is not a terminal
or NO_COLOR is set, so CI logs get plain lines.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from autobatch.errors import AutobatchError
from autobatch.stop import Terminated

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


def print_json(payload: Any) -> None:
    """Strict JSON (no NaN/Infinity) on stdout, bypassing rich's markup."""
    sys.stdout.write(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def user_output_to_stderr() -> Iterator[None]:
    """While the library runs the user's code, whatever it prints (Python or native,
    this process or its children) goes to stderr: stdout carries results only, so
    `--json` parses and `--format env` is safe to eval."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def fail(message: str, code: int) -> typer.Exit:
    stderr.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def exits_cleanly(command: F) -> F:
    """Turn autobatch errors into one line on stderr and the error's exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except AutobatchError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except Terminated:
            raise fail("terminated (SIGTERM); finished work is saved, rerun to resume",
                       EXIT_TERMINATED) from None
        except KeyboardInterrupt:
            raise fail("interrupted; finished work is saved, rerun to resume",
                       EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]
