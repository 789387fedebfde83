"""One writer per SQLite study file: an OS lock beside the database.

A SQLite study has a single worker, so whatever `tune` finds RUNNING when it starts
is a zombie of a dead process and is failed (study.fail_running). That holds only
while no other process runs trials on the file, so `tune` holds an exclusive flock on
`<db>.lock` from before it opens the database until it ends. The kernel drops the lock
when its process dies, by SIGKILL too, so a killed tune's zombies are still swept by
the next run. A second tune is refused at once (exit 2, naming the holder's pid)
instead of waiting: it could wait for hours behind a study it did not know was
running, and several processes on one study need PostgreSQL or a journal file anyway.
The lock file stays (empty but for the last holder's pid); it holds no study data.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import ClassVar

from autobatch.errors import StorageError
from autobatch.faults import Guard, kind_of, not_created


class StudyLock:
    """Held from creation until release() (or until it is dropped); a process may hold
    one file's lock several times (nested calls), the others are refused."""

    _held: ClassVar[dict[Path, list[int]]] = {}  # lock file -> [descriptor, holders]

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".lock")
        self._holding = False
        if self.path in self._held:
            self._held[self.path][1] += 1
            self._holding = True
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            kind = kind_of(exc, database)
            if kind is not None and not database.exists():
                raise not_created(database, kind, exc) from None
            if kind is not None:
                raise Guard(str(database), database).fault(kind, exc) from None
            raise StorageError(f"cannot create the lock file {self.path}: {exc.strerror}"
                               ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise StorageError(
                f"study database {database} is in use by another autobatch tune"
                + (f" (pid {holder})" if holder.isdigit() else "")
                + "; wait for it to end, or pass another --storage (several processes on "
                "one study need PostgreSQL or a journal file)") from None
        try:  # the pid only names the holder to a refused tune
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass
        self._held[self.path] = [fd, 1]
        self._holding = True

    def release(self) -> None:
        if not self._holding:
            return
        self._holding = False
        held = self._held[self.path]
        held[1] -= 1
        if held[1] == 0:
            del self._held[self.path]
            os.close(held[0])  # closing the last descriptor drops the flock

    def __enter__(self) -> StudyLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()
