"""Where studies live: storage URLs, opening them, and keeping passwords out of sight.

- SQLite (default, ``sqlite:///autobatch.db``): one worker; writers wait up to 60 s
  for a lock instead of failing with "database is locked".
- PostgreSQL (``postgresql://user:pass@host/db``) through Optuna's RDB storage with
  ``pool_pre_ping`` and heartbeats: a worker that dies mid-trial has its trial failed
  after the grace period and retried by a survivor. Many workers, many machines.
- A journal file (``journal:///shared/fs/study.log``): many workers on one shared
  filesystem, no database server.
"""

from __future__ import annotations

import logging
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages._rdb import models
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock, JournalStorage
from optuna.trial import TrialState
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session

from autobatch.errors import ConfigError, StorageError, StorageFault
from autobatch.faults import FULL, READ_ONLY, Guard, env_seconds, guard, kind_of, not_created

log = logging.getLogger(__name__)

DEFAULT_DB = "autobatch.db"
ENV_STORAGE = "AUTOBATCH_STORAGE"
JOURNAL_PREFIX = "journal://"
# Seconds a SQLite writer waits for a lock before "database is locked".
SQLITE_TIMEOUT_S = 60
# Heartbeats: a trial whose worker is silent for GRACE_FACTOR x the interval is failed.
HEARTBEAT_S = 10
ENV_HEARTBEAT = "AUTOBATCH_HEARTBEAT_S"  # every worker of a study must agree on it
GRACE_FACTOR = 3
# How often a failed (dead-worker) trial is re-run by a survivor.
MAX_RETRY = 3
# How far back from a journal's end to look for the start of a torn last line.
TORN_SCAN_BYTES = 1 << 20


# every call of Optuna's storage API, and the RDB storage's private ones its cache makes
_CALLS = tuple(name for name in vars(optuna.storages.BaseStorage) if not name.startswith("_")
               and name not in ("remove_session", "check_trial_is_updatable"))
_RDB_CALLS = (*_CALLS, "_create_new_trial", "_set_trial_param", "_get_trials",
              "_get_best_trial_id", "record_heartbeat")


class RDBStudyStorage(guard(optuna.storages.RDBStorage, _RDB_CALLS)):  # type: ignore[misc]
    """Optuna's RDB storage whose every call goes through a faults.Guard: transient
    errors retried, read-only or full filesystems and lost servers one StorageFault."""

    def __init__(self, url: str, *, path: Path | None, **kwargs: Any) -> None:
        self._guard = Guard(str(path) if path else mask_url(url), path)
        super().__init__(url, **kwargs)

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except StorageFault:  # the heartbeat thread: the trial's own calls report it
            log.debug("heartbeat of trial id %d not recorded", trial_id)


class JournalStudyStorage(guard(JournalStorage, _CALLS)):  # type: ignore[misc]
    """Optuna's journal storage whose calls go through a faults.Guard."""

    def __init__(self, path: Path, lock: JournalFileSymlinkLock) -> None:
        self._guard = Guard(str(path), path)
        super().__init__(JournalFileBackend(str(path), lock_obj=lock))


class HeartbeatStorage(RDBStudyStorage):
    """RDB storage whose stale trials include those that never sent a heartbeat.

    Optuna fails a RUNNING trial only once its last heartbeat is too old, so a worker
    killed between creating a trial and its first heartbeat (while the sampler runs)
    leaves a trial that holds the budget forever. Such a trial is failed too once this
    process has seen it silent for the grace period: timed by its own clock, never by
    another machine's timestamps.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._silent_since: dict[int, float] = {}

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        return self._guard.call(self._stale_trial_ids, study_id)

    def _stale_trial_ids(self, study_id: int) -> list[int]:
        stale = super()._get_stale_trial_ids(study_id)
        with Session(self.engine) as session:
            silent = session.scalars(
                session.query(models.TrialModel.trial_id)
                .filter(models.TrialModel.study_id == study_id,
                        models.TrialModel.state == TrialState.RUNNING,
                        ~models.TrialModel.heartbeats.any())
                .statement).all()
        now = time.monotonic()
        self._silent_since = {i: self._silent_since.get(i, now) for i in silent}
        return stale + [i for i, since in self._silent_since.items()
                        if now - since > self.grace_period]


# a query parameter whose name says it holds a secret, and its value (which may hold a
# raw '&': it ends only where the next `name=` begins)
_SECRET_PARAMETER = re.compile(
    r"([?&][^=&#]*(?:pass|pwd|secret|token|key)[^=&#]*=)(.*?)(?=&[^=&#]+=|#|$)",
    re.IGNORECASE)


def heartbeat_seconds() -> int:
    """$AUTOBATCH_HEARTBEAT_S (whole seconds >= 1), else HEARTBEAT_S."""
    return env_seconds(ENV_HEARTBEAT, HEARTBEAT_S, 1)


def default_storage_url() -> str:
    """$AUTOBATCH_STORAGE, else a SQLite file in the working directory."""
    return os.environ.get(ENV_STORAGE) or f"sqlite:///{DEFAULT_DB}"


def mask_url(url: str) -> str:
    """The URL with every credential replaced by ***, safe for logs, files and notes.

    Both forms libpq and SQLAlchemy accept are masked: the password of `user:pass@`,
    up to the *last* '@' of the address (a password with a raw '@', which a URL parser
    splits at the first one, is hidden whole too), and query parameters that carry one
    (`?password=`, `sslpassword=`, tokens, keys), each up to the next parameter.
    """
    if url.startswith(JOURNAL_PREFIX):
        return url
    url = _SECRET_PARAMETER.sub(r"\1***", url)
    scheme, sep, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    user, colon, _ = credentials.partition(":")
    if not (sep and at and colon) or "/" in user:  # no password in it
        return url
    return f"{scheme}://{user}:***@{location}"


def backend(url: str) -> str:
    """'sqlite', 'postgresql', 'journal', ... (the scheme without its driver)."""
    if url.startswith(JOURNAL_PREFIX):
        return "journal"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"storage URL {mask_url(url)!r} is not a valid database URL") from None
    if parsed.host and "@" in parsed.host:  # the rest of a password with a raw '@'
        raise ConfigError(f"the password in storage URL {mask_url(url)!r} holds a raw '@': "
                          "URL-encode it (@ as %40, % as %25, / as %2F)")
    return parsed.get_backend_name()


def storage_file(url: str) -> Path | None:
    """The file a SQLite or journal storage lives in (absolute); None for a server."""
    kind = backend(url)
    if kind == "journal":
        return Path(url.removeprefix(JOURNAL_PREFIX)).resolve()  # journal:///abs or ://rel
    database = make_url(url).database if kind == "sqlite" else None
    return Path(database).resolve() if database else None


def supports_workers(url: str) -> bool:
    """Whether several processes may share this storage safely."""
    return backend(url) != "sqlite"


def require_shared_storage(url: str, who: str) -> None:
    """Refuse a storage that only one process may use (SQLite) for `who`."""
    if not supports_workers(url):
        raise ConfigError(
            f"{who} cannot share SQLite storage {mask_url(url)} safely; use PostgreSQL "
            "(--storage postgresql://user:pass@host/db) or a journal file on a shared "
            "filesystem (--storage journal:///path/study.log)")


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage for the URL, with clear one-line errors (password masked)."""
    kind = backend(url)
    heartbeat_s = heartbeat_seconds()
    path = storage_file(url)
    if path is not None and not path.parent.is_dir():
        raise ConfigError(f"storage folder {str(path.parent)!r} does not exist")
    if kind == "journal":
        lock = JournalFileSymlinkLock(str(path))
        try:  # a torn last line (a writer killed mid-write) is skipped by Optuna itself
            storage = JournalStudyStorage(path, lock)
        except (UnicodeDecodeError, ValueError) as exc:
            raise StorageError(
                f"{str(path)!r} is not a readable study journal ({exc}); it was left "
                "untouched: restore it from a backup, or pass --storage journal:///NEW.log"
            ) from None
        drop_torn_line(path, lock)
        return storage
    if kind == "sqlite":
        existed = path is None or path.exists()
        try:
            return RDBStudyStorage(url, path=path, engine_kwargs={
                "connect_args": {"timeout": SQLITE_TIMEOUT_S}})
        except DatabaseError as exc:  # not a database, or a torn one: never written to
            if (fault := kind_of(exc, path)) in (READ_ONLY, FULL) and path is not None:
                raise _not_created(path, existed, fault, exc) from None
            raise StorageError(
                f"{str(path)!r} is not a readable SQLite study database ({_reason(exc)}); "
                "it was left untouched: restore it from a backup (sqlite3 FILE '.recover' "
                "may save its trials), or pass --storage sqlite:///NEW.db") from None
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return HeartbeatStorage(
                url, path=None, engine_kwargs={"pool_pre_ping": True},
                heartbeat_interval=heartbeat_s,
                grace_period=GRACE_FACTOR * heartbeat_s,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(MAX_RETRY))
    except (ImportError, NoSuchModuleError) as exc:
        missing = getattr(exc.__cause__, "name", None) or exc
        raise StorageError(
            f"no database driver for {mask_url(url)} (missing {missing}); for PostgreSQL "
            "run pip install 'autobatch[postgres]'") from None
    except OperationalError as exc:
        parsed = make_url(url)
        raise StorageError(
            f"cannot reach the {kind} server at {parsed.host}:{parsed.port or 'default port'} "
            f"({mask_url(url)}): {_reason(exc)}") from None


def _not_created(path: Path, existed: bool, kind: str, exc: DatabaseError) -> StorageError:
    """The error for a database that could not be opened on a read-only or full
    filesystem; a new one is removed again, with SQLite's side files."""
    if existed:
        return Guard(str(path), path).fault(kind, exc)
    for leftover in (path, *(path.with_name(path.name + s) for s in ("-journal", "-wal"))):
        leftover.unlink(missing_ok=True)
    return not_created(path, kind, exc)


def drop_torn_line(path: Path, lock: JournalFileSymlinkLock) -> None:
    """Cut a journal's torn last line (a writer killed mid-write), under the writers' lock.

    Optuna skips that line when reading, but the next record would be appended to it
    and be lost with it (and the write fail). The torn bytes hold no readable record;
    every complete line stays as it is.
    """
    if not path.exists():
        return
    lock.acquire()
    try:
        with path.open("rb+") as journal:
            size = journal.seek(0, os.SEEK_END)
            tail = journal.seek(max(0, size - TORN_SCAN_BYTES))
            chunk = journal.read()
            if not chunk or chunk.endswith(b"\n"):
                return
            cut = chunk.rfind(b"\n")
            if cut < 0 and tail > 0:  # a "line" longer than any record: not torn, keep it
                return
            journal.truncate(tail + cut + 1)
            log.warning("cut a torn last line of %d bytes from %s (a writer was killed "
                        "mid-write)", len(chunk) - cut - 1, path)
    finally:
        lock.release()


def _reason(exc: DatabaseError) -> str:
    """The driver's own first line, without SQLAlchemy's SQL and links."""
    return str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
