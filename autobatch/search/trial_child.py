"""The child side of SubprocessRunner (see runners.py): one trial, then exit; and the
outcome messages a trial's process (or a data-parallel trial's rank 0) reports.

main(READ_FD, WRITE_FD) reads (workload spec, RunConfig, device, Segment) from READ_FD,
trains, writes ("eval", point) per evaluation and reads the answer (True: stop), then
writes the outcome: ("ok", RunResult), ("oom", message), ("exit", code) or ("error",
exception, traceback). result_of() turns an outcome back into the result or error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

import autobatch.frames as frames
from autobatch.device import is_oom
from autobatch.errors import TrialCrashed
from autobatch.train import EvalPoint, RunResult, run
from autobatch.workloads import load_workload


class UserExit(TrialCrashed):
    """The workload's own code called sys.exit() while training: a failed trial, never a
    successful end of the tune."""

    reason = "sys_exit"

    def __init__(self, code: object) -> None:
        super().__init__(f"the workload's code called sys.exit({code!r}) during training")


def outcome(train: Callable[[], RunResult]) -> tuple[Any, ...]:
    """train()'s outcome as a message."""
    try:
        return ("ok", train())
    except SystemExit as exc:  # the user's code ended its process: say so, not success
        return ("exit", exc.code)
    except Exception as exc:
        return ("oom", str(exc)) if is_oom(exc) else ("error", *frames.portable(exc))


def result_of(message: tuple[Any, ...]) -> RunResult:
    """The RunResult of an outcome message, or its error raised here."""
    kind, *payload = message
    if kind == "oom":
        raise torch.OutOfMemoryError(payload[0])
    if kind == "exit":
        raise UserExit(payload[0])
    if kind == "error":
        error, text = payload
        raise error from frames.RemoteTraceback(text)
    return payload[0]


def main(read_fd: int, write_fd: int) -> None:
    reader = frames.Reader(read_fd)
    spec, config, device, segment = reader.next()

    def on_eval(point: EvalPoint) -> bool:
        frames.send(write_fd, ("eval", point))
        return bool(reader.next())

    frames.send(write_fd, outcome(
        lambda: run(load_workload(**spec), config, device=device, on_eval=on_eval,
                    pause=segment.pause, resume=segment.resume, keep_model=segment.keep_model)))
