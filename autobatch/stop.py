"""Stop signals (SIGINT, SIGTERM), obeyed at safe points.

Raising from a signal handler is unsafe: Python runs a handler between any two
bytecodes, inside a garbage-collection callback (where an exception is dropped and the
signal lost), a `finally` block or Optuna's own bookkeeping (which then fails in odd
ways). With install(), the first signal is only recorded; the long loops (training
steps, probe candidates, profile sizes, trials, waits on child processes) call
check() between units of work and stop there, by raising KeyboardInterrupt (Ctrl-C)
or Terminated (SIGTERM) from ordinary code. A second signal raises at once, for a
loop that has no safe point (where Python drops that exception, the first signal
still stands, and no traceback is shown); a third ends the process on the spot.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Iterable
from typing import Any

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
PR_SET_PDEATHSIG = 1  # prctl(2)
_pending: list[int] = []  # the signals received, in order


class Terminated(KeyboardInterrupt):
    """SIGTERM (what CI, Slurm and Kubernetes send), raised like Ctrl-C so that a running
    trial is closed as FAIL instead of being left RUNNING."""


def interruption(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _handler(signum: int, frame: Any) -> None:
    _pending.append(signum)
    if len(_pending) == 1:
        os.write(2, b"\nstopping after the current step (again to stop at once)\n")
    elif len(_pending) == 2:
        raise interruption(_pending[0])
    else:
        os._exit(exit_code())


def install(received: Iterable[int] = ()) -> None:
    """Record SIGINT and SIGTERM for check() (the command line calls this); `received`:
    signals recorded before, which count as received now."""
    _pending[:] = list(received)
    for signum in EXIT_CODES:
        signal.signal(signum, _handler)
    sys.unraisablehook = _quiet_unraisable


def _quiet_unraisable(unraisable: Any) -> None:
    """A second signal's interruption raised where Python drops exceptions (a garbage-
    collection callback) is not worth a traceback: the first signal is still recorded,
    and the next safe point obeys it."""
    if not (isinstance(unraisable.exc_value, KeyboardInterrupt) and _pending):
        sys.__unraisablehook__(unraisable)


def end_with_parent(parent: int) -> None:
    """Have this process get SIGTERM when `parent`, the process that started it, ends,
    even by SIGKILL (Linux; elsewhere nothing): a worker then closes its trial and
    stops instead of running on alone. A parent already gone is obeyed now."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        _pending.append(signal.SIGTERM)


def raise_at_once() -> None:
    """Stop signals raise in their handler again: for code without safe points that
    blocks where autobatch cannot check (a web server)."""
    for signum in EXIT_CODES:
        signal.signal(signum, _raise_now)


def _raise_now(signum: int, frame: Any) -> None:
    raise interruption(signum)


def requested() -> bool:
    return bool(_pending)


def exit_code() -> int:
    """The exit code of the first stop signal received (130 for Ctrl-C, 143 for SIGTERM)."""
    return EXIT_CODES[_pending[0]]


def check() -> None:
    """A safe point: raise the interruption of a recorded stop signal, if any."""
    if _pending:
        raise interruption(_pending[0])
