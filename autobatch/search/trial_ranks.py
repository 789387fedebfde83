"""The ranks' side of ParallelRunner (see parallel_runner.py): one data-parallel trial.

Every rank trains its share (train.distributed); rank 0 connects to the runner's
socket, writes ("eval", point) per evaluation and reads the answer (True: stop),
which it broadcasts to the others. Every rank returns its outcome message
(trial_child.outcome); the runner reads rank 0's.
"""

from __future__ import annotations

import socket
from typing import Any

import autobatch.frames as frames
from autobatch.config import RunConfig
from autobatch.search.trial_child import outcome
from autobatch.train import EvalPoint, Segment, run
from autobatch.train.distributed import Ranks
from autobatch.workloads import load_workload


def train_rank(ranks: Ranks, address: str, spec: dict[str, Any], config: RunConfig,
               segment: Segment) -> tuple[Any, ...]:
    pausing = {"pause": segment.pause, "resume": segment.resume}  # refused by the loop
    if ranks.rank != 0:
        return outcome(lambda: run(load_workload(**spec), config, device=ranks.device,
                                   ranks=ranks, **pausing))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(address)
        fd = conn.fileno()
        reader = frames.Reader(fd)

        def on_eval(point: EvalPoint) -> bool:
            frames.send(fd, ("eval", point))
            return bool(reader.next())

        return outcome(lambda: run(load_workload(**spec), config, device=ranks.device,
                                   on_eval=on_eval, ranks=ranks, **pausing,
                                   keep_model=segment.keep_model))
