"""Where output goes: results on stdout, progress and errors on stderr.

rich drops colour and cursor control by itself when the stream is not a terminal
or NO_COLOR is set, so CI logs get plain lines.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
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


class NoticeFormatter(logging.Formatter):
    """A library notice as a newcomer reads it, "warning: ...": the logger's name and
    the upper-case level only with --verbose, where they help to find the source."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return f"{record.levelname.lower()}: {record.message}"


def configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s") if verbose
                         else NoticeFormatter())
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])


PLAIN_PROGRESS_S = 10.0  # off a terminal, a long stage's progress line at most this often


class Every:
    """due() is true at once, then at most once per `seconds`."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.clock = seconds, clock
        self.last = -math.inf

    def due(self) -> bool:
        now = self.clock()
        if now - self.last < self.seconds:
            return False
        self.last = now
        return True


def stage_steps(status: Any, title: str) -> Callable[[str], None]:
    """A long stage's progress: on a terminal the rich `status` line reads "title: step";
    off one, a plain "title: step" line at most every PLAIN_PROGRESS_S."""
    plain = Every(PLAIN_PROGRESS_S)

    def show(step: str) -> None:
        if stderr.is_terminal:
            status.update(f"{title}: {step}")
        elif plain.due():
            stderr.print(f"{title}: {step}", markup=False)
    return show


def print_json(payload: Any) -> None:
    """Strict JSON (no NaN/Infinity) on stdout, bypassing rich's markup."""
    out = stdout.file
    out.write(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    out.flush()


def keep_stdout_for_results() -> None:
    """From here on stdout carries results only: file descriptor 1 (and sys.stdout over
    it) becomes stderr, so whatever user code prints, Python or native, in this process
    or its children (workers, trial processes, forked probes), goes to stderr; results
    go to the real stdout, set aside. `--json` parses and `--format env` is safe to eval
    whatever the training code prints, from the import of its module on."""
    sys.stdout.flush()
    try:
        stdout.file = os.fdopen(os.dup(1), "w", encoding="utf-8")
        os.dup2(2, 1)
    except OSError:  # stdout or stderr closed: nothing to keep apart
        return
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]


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
        except SystemExit as exc:  # the commands end through typer.Exit, never this
            raise fail(f"the workload's code called sys.exit({exc.code!r}); autobatch "
                       "stopped (finished work is saved)", 1) from None
        except KeyboardInterrupt:
            raise fail("interrupted; finished work is saved, rerun to resume",
                       EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]
