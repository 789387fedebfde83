"""ParallelRunner: a trial as a data-parallel torch.distributed job on this machine.

Each trial is a job of `nproc` ranks started by PyTorch's launcher (train.launcher):
gloo on CPU, NCCL on CUDA with one device per rank. The RunConfig's world_size is
nproc, its batch_size the global batch. Rank 0 streams the evaluation points back
and takes the pruner's answers, as SubprocessRunner's child does; an out-of-memory
error on any rank is agreed by all ranks within the step and raised here (the trial
is pruned 'oom'); a rank that dies ends the trial with RankDied (fail reason
'rank_died') once the launcher has stopped the others.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

import autobatch.frames as frames
import autobatch.stop as stop
from autobatch.config import RunConfig
from autobatch.errors import ConfigError
from autobatch.search.trial_child import result_of
from autobatch.train import EvalCallback, RunResult, Segment
from autobatch.train.distributed import timeout_s
from autobatch.train.launcher import SHUTDOWN_S, Launch, RankJob
from autobatch.workloads import ScriptWorkload, Workload


def check_nproc(nproc: int, device: torch.device, cuda_devices: tuple[str, ...] | None) -> None:
    """Refuse a rank count below 1, or above the CUDA devices a CUDA job would use."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ConfigError(f"--nproc-per-trial must be an integer >= 1, got {nproc!r}")
    if cuda_devices is None and device.type != "cuda":
        return  # CPU ranks share the machine's cores
    count = len(cuda_devices) if cuda_devices is not None else torch.cuda.device_count()
    if nproc > count:
        raise ConfigError(f"--nproc-per-trial {nproc} needs {nproc} CUDA devices (one per "
                          f"rank), but {count} are given")


def rank_spec(workload: Workload | ScriptWorkload, nproc: int) -> dict[str, Any]:
    """The spec the ranks rebuild the workload from; ConfigError where there is none."""
    if isinstance(workload, ScriptWorkload) or workload.spec is None:
        raise ConfigError(f"--nproc-per-trial {nproc} needs a workload loaded by name "
                          f"(the ranks rebuild it; a script trains in its own process), "
                          f"not {workload.name!r}")
    if workload.trainer is not None:
        raise ConfigError(f"--nproc-per-trial {nproc}: {workload.name!r} trains with a "
                          f"framework's own trainer, which starts its own processes")
    return workload.spec


@dataclass(frozen=True)
class ParallelRunner:
    """Train in `nproc` ranks; the workload travels as its spec, as for SubprocessRunner.
    cuda_devices: the CUDA devices of the ranks (default: the first nproc)."""

    workload_spec: dict[str, Any]
    device: torch.device
    nproc: int
    cuda_devices: tuple[str, ...] | None = None
    can_pause = False  # each rank's batch position and RNG would need a checkpoint

    def __post_init__(self) -> None:
        check_nproc(self.nproc, self.device, self.cuda_devices)

    def run(self, config: RunConfig, on_eval: EvalCallback,
            segment: Segment = Segment()) -> RunResult:
        """Train on the ranks; a segment's pause or resume is refused (ConfigError), its
        keep_model honoured (rank 0 saves the model)."""
        config = replace(config, world_size=self.nproc)
        job = RankJob(target="autobatch.search.trial_ranks:train_rank",
                      args=(self.workload_spec, config, segment), nproc=self.nproc,
                      device=self.device.type, cuda_devices=self.cuda_devices)
        with Launch(job) as launch:
            fd = launch.connection()
            if fd is not None:
                reader = frames.Reader(fd)
                while (message := reader.next(idle=stop.check)) is not None \
                        and message[0] == "eval":
                    frames.send(fd, bool(on_eval(message[1])))
            # rank 0 has ended: the others end at its next collective, or time out
            outcomes = launch.results(within=timeout_s() + SHUTDOWN_S)
        return result_of(outcomes[0])
