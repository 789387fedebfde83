"""Run a function in a forked child and watch its memory (the CPU memory probe).

A child measures from a clean heap: nothing freed-but-cached by an earlier
candidate inflates its peak, and an out-of-memory kill ends the child, not the
caller. The child reports through a pipe; the parent polls its anonymous resident
memory and kills it when it grows past a cap, as a container limit would.
"""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Callable
from typing import Any

import torch

import autobatch.frames as frames
import autobatch.stop as stop
from autobatch.device import is_oom, proc_status_bytes
from autobatch.errors import AutobatchError, DeviceError

POLL_S = 0.002  # how often the parent reads the child's memory


class ChildOutOfMemory(Exception):
    """The child ran out of memory, passed its cap, or was killed by the OOM killer."""

    def __init__(self, steps: int) -> None:
        super().__init__(f"out of memory after {steps} step(s)")
        self.steps = steps


def anon_bytes(pid: int | str) -> int:
    return proc_status_bytes("RssAnon", pid) + proc_status_bytes("RssShmem", pid)


def run_in_child(fn: Callable[[Callable[[tuple], None]], Any], *, anon_cap: int | None,
                 on_progress: Callable[[str], None] | None = None) -> tuple[Any, int]:
    """Run fn(send) in a forked child; return its result and the steps it ran.

    The child reports through length-prefixed pickles: ("start", anon_bytes),
    ("step",) per training step started, ("progress", line) for on_progress as it
    arrives, then its outcome. With anon_cap, the
    parent kills a child whose anonymous memory grows by more than anon_cap bytes
    past its start; that, the child's own OOM, or a SIGKILL from the kernel's OOM
    killer raises ChildOutOfMemory. Any other error is re-raised here with the child's
    traceback as its cause.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into the caller's stack
        os.close(read_fd)
        # libgomp's thread pool does not survive fork (a parallel region would hang),
        # so the child computes on one thread, as DataLoader workers do.
        torch.set_num_threads(1)
        try:
            def send(message: tuple) -> None:
                frames.send(write_fd, message)

            try:
                outcome: tuple = ("ok", fn(send))
            except BaseException as exc:
                outcome = ("oom",) if is_oom(exc) else ("error", *frames.portable(exc))
            send(outcome)
        finally:
            os._exit(0)
    os.close(write_fd)
    reader = frames.Reader(read_fd)
    messages: list[tuple] = []
    anon_start: int | None = None
    killed = False
    try:
        while True:
            stop.check()  # a stop signal kills the child (below) and ends the probe
            ready, _, _ = select.select([read_fd], [], [], POLL_S)
            if ready:
                arrived = reader.feed()
                if arrived is None:
                    break
                messages += arrived
                for line in (m[1] for m in arrived if m[0] == "progress"):
                    if on_progress is not None:
                        on_progress(line)
                anon_start = next((m[1] for m in messages if m[0] == "start"), anon_start)
            elif anon_cap is not None and anon_start is not None and not killed \
                    and _anon_or_zero(pid) - anon_start > anon_cap:
                os.kill(pid, signal.SIGKILL)
                killed = True
        _, status = os.waitpid(pid, 0)
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(read_fd)
    steps = sum(1 for m in messages if m[0] == "step")
    last = messages[-1] if messages else ("none",)
    if killed or last[0] == "oom" or (last[0] not in ("ok", "error")
                                      and os.WIFSIGNALED(status)
                                      and os.WTERMSIG(status) == signal.SIGKILL):
        raise ChildOutOfMemory(steps)
    if last[0] == "error":
        raise last[1] from frames.RemoteTraceback(last[2])
    if last[0] != "ok":
        raise DeviceError(f"the probe's child process died (wait status {status}) "
                          "without reporting: a crash in native code or a sticky CUDA error")
    return last[1], steps


def _anon_or_zero(pid: int) -> int:
    try:
        return anon_bytes(pid)
    except (OSError, AutobatchError):  # the child just exited
        return 0
