"""Length-prefixed pickles over a pipe: how autobatch's child processes talk.

The forked memory probe reports steps and its outcome this way; a trial in a
subprocess streams its evaluation points and reads the pruner's answers.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import traceback
from collections.abc import Callable
from typing import Any

HEADER = struct.Struct("<I")
IDLE_S = 0.1


class RemoteTraceback(Exception):
    """Carries a child's formatted traceback as the cause of the re-raised error."""

    def __str__(self) -> str:
        return self.args[0]


def send(fd: int, message: Any) -> None:
    """Write one message (blocking until all of it is written)."""
    data = pickle.dumps(message)
    data = HEADER.pack(len(data)) + data
    while data:
        data = data[os.write(fd, data):]


class Reader:
    """Collects messages from a file descriptor, however the bytes arrive."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""

    def _read(self) -> bool:
        chunk = os.read(self.fd, 1 << 16)
        self.buffer += chunk
        return bool(chunk)

    def _pop(self) -> tuple[bool, Any]:
        if len(self.buffer) < HEADER.size:
            return False, None
        end = HEADER.size + HEADER.unpack(self.buffer[:HEADER.size])[0]
        if len(self.buffer) < end:
            return False, None
        message, self.buffer = pickle.loads(self.buffer[HEADER.size:end]), self.buffer[end:]
        return True, message

    def feed(self) -> list[Any] | None:
        """Read what is there (one os.read): the complete messages; None at end of file."""
        if not self._read():
            return None
        out = []
        while (popped := self._pop())[0]:
            out.append(popped[1])
        return out

    def next(self, idle: Callable[[], None] | None = None) -> Any | None:
        """Block for the next message; None at end of file. idle() is called every
        IDLE_S while waiting (it may raise, to stop waiting)."""
        while not (popped := self._pop())[0]:
            while idle is not None and not select.select([self.fd], [], [], IDLE_S)[0]:
                idle()
            if not self._read():
                return None
        return popped[1]


def portable(exc: BaseException) -> tuple[BaseException, str]:
    """The exception and its formatted traceback; a RuntimeError with its text when the
    exception does not pickle."""
    tb = "".join(traceback.format_exception(exc))
    try:
        pickle.loads(pickle.dumps(exc))
        return exc, tb
    except Exception:  # unpicklable user exception: keep its type name and message
        return RuntimeError(f"{type(exc).__name__}: {exc}"), tb
