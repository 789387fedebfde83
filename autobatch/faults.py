"""Storage faults: which errors of a study storage pass and are retried, which are final,
and the one line each is reported with.

- Transient: a database server that restarts, drops the connection or is briefly
  unreachable, and SQLite's "database is locked" past its own timeout. The call is
  retried with backoff for up to RETRY_S seconds ($AUTOBATCH_STORAGE_RETRY_S); past
  that the storage counts as lost: this call and every later one raise StorageFault.
- Final: a read-only or full filesystem. Raised as StorageFault at once, naming the
  cause and the file; whatever was stored before stays as it was.
- Anything else (a bug, a corrupt file, a finished trial updated) is not a fault of
  the storage and propagates unchanged.

guard() wraps a storage class's calls, so every caller (Optuna's study, its cache, the
heartbeat thread, autobatch's own sweeps) gets the same treatment; nested calls are
retried once, by the outermost.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError

import autobatch.stop as stop
from autobatch.errors import ConfigError, StorageFault

log = logging.getLogger(__name__)

ENV_RETRY = "AUTOBATCH_STORAGE_RETRY_S"
RETRY_S = 60  # how long a transient fault is retried before the storage counts as lost
FIRST_BACKOFF_S = 0.25
MAX_BACKOFF_S = 5.0
TRANSIENT, READ_ONLY, FULL = "transient", "storage_read_only", "storage_full"
LOST = "storage_lost"
_CAUSES = {READ_ONLY: "read-only file system", FULL: "no space left on device"}

C = TypeVar("C", bound=type)


def env_seconds(name: str, default: int, minimum: int) -> int:
    """The storage setting in environment variable `name`: whole seconds >= minimum,
    else `default`; anything else is a ConfigError naming the variable."""
    text = os.environ.get(name) or str(default)
    if not (text.strip().isdigit() and int(text) >= minimum):
        raise ConfigError(f"{name} must be a whole number of seconds >= {minimum}, got "
                          f"{text!r}")
    return int(text)


def retry_seconds() -> int:
    """$AUTOBATCH_STORAGE_RETRY_S (0: never retry), else RETRY_S."""
    return env_seconds(ENV_RETRY, RETRY_S, 0)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """exc, what caused it, and what it wraps (a driver's own error), each once."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__, getattr(e, "orig", None)]


def folder_state(path: Path | None) -> str | None:
    """READ_ONLY or FULL when the filesystem of `path`'s folder is, else None."""
    if path is None:
        return None
    try:
        fs = os.statvfs(path.parent)
    except OSError:
        return None
    if fs.f_flag & os.ST_RDONLY:
        return READ_ONLY
    return FULL if fs.f_bavail == 0 or fs.f_favail == 0 else None


def kind_of(exc: BaseException, path: Path | None) -> str | None:
    """TRANSIENT, READ_ONLY or FULL for a fault of the storage; None for anything else.

    path: the storage's file (None for a server).
    """
    for e in causes(exc):
        if isinstance(e, OSError):
            if e.errno == errno.EROFS:
                return READ_ONLY
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                return FULL
        if isinstance(e, sqlite3.Error):
            text = str(e).lower()
            if "readonly" in text or "read-only" in text:
                return READ_ONLY
            if "disk is full" in text:
                return FULL
            if "locked" in text:
                return TRANSIENT
            if "unable to open" in text or "disk i/o" in text:
                return folder_state(path)
            return None
        if isinstance(e, DBAPIError) and path is None and (
                isinstance(e, OperationalError) or e.connection_invalidated):
            return TRANSIENT  # a server's disconnect, restart or refused connection
    return None


def cause(kind: str, exc: BaseException, path: Path | None) -> str:
    """READ_ONLY or FULL in words: what the filesystem says, else the driver's line."""
    if kind == READ_ONLY and path is not None and folder_state(path) != READ_ONLY:
        return f"the database is read-only ({_reason(exc)})"  # permissions, not the disk
    return _CAUSES[kind]


def not_created(path: Path, kind: str, exc: BaseException) -> StorageFault:
    """The fault for a new study database that a read-only or full filesystem refused."""
    return StorageFault(f"cannot create the study database {path}: {cause(kind, exc, path)}; "
                        "nothing was left behind (pass --storage sqlite:///PATH on a "
                        "writable filesystem with free space)", kind)


def _reason(exc: BaseException) -> str:
    """The driver's own first line."""
    for e in causes(exc):
        if isinstance(e, sqlite3.Error | OSError) or type(e).__module__.startswith("psycopg"):
            text = str(e).strip()
            return text.splitlines()[0] if text else type(e).__name__
    return str(exc).strip().splitlines()[0]


class Guard:
    """The fault handling of one storage: where it lives, its retry window, and whether
    it was lost."""

    def __init__(self, where: str, path: Path | None) -> None:
        self.where, self.path = where, path  # where: the file, or the masked URL
        self.window_s = retry_seconds()
        self.lost: StorageFault | None = None
        self._depth = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_depth"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _depth=threading.local())

    def fault(self, kind: str, exc: BaseException) -> StorageFault:
        if kind == LOST:
            return StorageFault(
                f"lost the study storage {self.where}: {_reason(exc)} (retried for "
                f"{self.window_s} s, ${ENV_RETRY}); finished trials are stored, rerun to "
                "resume once it is back", LOST)
        hint = ("free some space" if kind == FULL else "copy it somewhere writable or "
                "remount the filesystem read-write")
        return StorageFault(f"cannot write the study storage {self.where}: "
                            f"{cause(kind, exc, self.path)}; finished trials are intact "
                            f"({hint}, then rerun to resume)", kind)

    def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if getattr(self._depth, "n", 0):  # a nested call: the outermost one retries
            return method(*args, **kwargs)
        self._depth.n = 1
        try:
            return self._retrying(method, *args, **kwargs)
        finally:
            self._depth.n = 0

    def _retrying(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.lost is not None:
            raise self.lost
        first_failure, backoff = None, FIRST_BACKOFF_S
        while True:
            try:
                result = method(*args, **kwargs)
            except Exception as exc:
                kind = kind_of(exc, self.path)
                if kind is None:
                    raise
                if kind != TRANSIENT:
                    raise self.fault(kind, exc) from None
                now = time.monotonic()
                if first_failure is None:
                    first_failure = now
                    log.warning("study storage %s unreachable (%s); retrying for up to %d s",
                                self.where, _reason(exc), self.window_s)
                if now - first_failure + backoff > self.window_s or stop.requested():
                    self.lost = self.fault(LOST, exc)
                    raise self.lost from None
                time.sleep(backoff)
                backoff = min(2 * backoff, MAX_BACKOFF_S)
            else:
                if first_failure is not None:
                    log.warning("study storage %s reachable again after %.0f s", self.where,
                                time.monotonic() - first_failure)
                return result


def guard(cls: C, names: tuple[str, ...]) -> C:
    """A subclass of storage class `cls` whose methods `names` go through its `_guard`
    (a Guard the subclass's __init__ must set before anything calls them)."""

    def guarded(name: str) -> Callable[..., Any]:
        method = getattr(cls, name)

        @functools.wraps(method)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            guard_ = self.__dict__.get("_guard")
            if guard_ is None:  # called during the base class's own __init__
                return method(self, *args, **kwargs)
            return guard_.call(method, self, *args, **kwargs)

        return call

    return type(f"Guarded{cls.__name__}", (cls,), {n: guarded(n) for n in names})


def lost_fault(storage: Any) -> StorageFault | None:
    """The fault that made `storage` (or the storage Optuna's cache wraps) lost, if any."""
    guard_ = getattr(getattr(storage, "_backend", storage), "_guard", None)
    return guard_.lost if guard_ is not None else None
