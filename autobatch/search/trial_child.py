"""The child side of SubprocessRunner (see runners.py): one trial, then exit.

main(READ_FD, WRITE_FD) reads (workload spec, RunConfig, device, Segment) from READ_FD,
trains,
writes ("eval", point) per evaluation and reads the answer (True: stop), then writes
("ok", RunResult), ("oom", message), ("exit", code) or ("error", exception,
traceback).
"""

from __future__ import annotations

import autobatch.frames as frames
from autobatch.device import is_oom
from autobatch.train import EvalPoint, run
from autobatch.workloads import load_workload


def main(read_fd: int, write_fd: int) -> None:
    reader = frames.Reader(read_fd)
    spec, config, device, segment = reader.next()

    def on_eval(point: EvalPoint) -> bool:
        frames.send(write_fd, ("eval", point))
        return bool(reader.next())

    try:
        workload = load_workload(**spec)
        outcome: tuple = ("ok", run(workload, config, device=device, on_eval=on_eval,
                                    pause=segment.pause, resume=segment.resume,
                                    keep_model=segment.keep_model))
    except SystemExit as exc:  # the user's code ended its process: say so, not success
        outcome = ("exit", exc.code)
    except Exception as exc:
        outcome = ("oom", str(exc)) if is_oom(exc) else ("error", *frames.portable(exc))
    frames.send(write_fd, outcome)
