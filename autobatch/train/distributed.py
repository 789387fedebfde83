"""The ranks of a data-parallel run: process group, sharding and agreement.

The one training loop takes a `Solo` (one process, the default) or `Ranks` (this
process's place among world_size processes of a torch.distributed job, started by
autobatch.train.launcher). With Ranks:

- every rank draws the same seeded global batch (TrainBatches at the global batch
  size, reshuffled per epoch exactly as one process does) and trains on its slice, so
  a step sees the same samples as one process at that global batch;
- the model is wrapped in `Agreed`, a DistributedDataParallel whose ranks agree on an
  out-of-memory error right after the forward pass, before DDP's gradient all-reduce
  (a rank that skipped the backward pass would leave the others waiting in it);
- every step ends with one all-reduce of [OOM flag, loss, rank 0's clock], so an OOM
  anywhere is raised on all ranks within that step, and divergence, budget and
  evaluation times are decided from the same numbers on all ranks;
- rank 0 evaluates; the metric, its time and the on_eval answer are broadcast.
Collectives time out after timeout_s() seconds, so a dead rank never hangs the rest.
"""

from __future__ import annotations

import datetime
import operator
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from autobatch.device import is_oom
from autobatch.errors import ConfigError
from autobatch.faults import env_seconds
from autobatch.train.data import Batch, map_inputs

ENV_TIMEOUT = "AUTOBATCH_RANK_TIMEOUT_S"
TIMEOUT_S = 60  # how long a collective waits for a rank before it fails


class AgreedOutOfMemory(torch.OutOfMemoryError):
    """An out-of-memory error every rank raises at the same point."""


def timeout_s() -> int:
    """$AUTOBATCH_RANK_TIMEOUT_S, else TIMEOUT_S."""
    return env_seconds(ENV_TIMEOUT, TIMEOUT_S, 1)


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA ranks, gloo for CPU ranks."""
    return "nccl" if device.type == "cuda" else "gloo"


class Solo:
    """One process: the loop's steps and decisions as they are."""

    rank = 0
    world_size = 1

    def check_pause(self, pausing: bool) -> None:
        """A run of one process can pause and resume."""

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def shard(self, batches: Iterable[Batch]) -> Iterable[Batch]:
        return batches

    def agree_step(self, step: Callable[[], Tensor], clock: Callable[[], float],
                   offset: float) -> tuple[float, float]:
        """(loss, training seconds so far: offset + clock()) of one step."""
        loss = step().item()
        return loss, offset + clock()

    def on_rank0(self, fn: Callable[[], tuple[float, float]]) -> tuple[float, float]:
        """fn() (evaluate: metric and seconds), as rank 0 computed it."""
        return fn()

    def decide(self, answer: bool) -> bool:
        """Rank 0's answer (the pruner's, through on_eval)."""
        return answer


SOLO = Solo()


@dataclass(frozen=True, kw_only=True)
class Ranks(Solo):
    """This process's rank in an initialised process group of world_size ranks."""

    rank: int
    world_size: int
    device: torch.device

    def check_pause(self, pausing: bool) -> None:
        if pausing:  # each rank's batch position and RNG would need a checkpoint of its own
            raise ConfigError(f"a run of {self.world_size} ranks cannot pause or resume")

    def wrap(self, model: nn.Module) -> nn.Module:
        return Agreed(model, self)

    def shard(self, batches: Iterable[Batch]) -> Iterator[Batch]:
        for x, y in batches:
            size = len(y) // self.world_size
            part = slice(self.rank * size, (self.rank + 1) * size)
            yield map_inputs(x, operator.itemgetter(part)), y[part]

    def agree_oom(self, failed: bool, where: str) -> None:
        """Raise an OOM on every rank when any rank ran out of memory."""
        flag = torch.tensor([float(failed)], device=self.device)
        dist.all_reduce(flag)
        if flag.item() > 0:
            raise AgreedOutOfMemory(
                f"out of memory on {int(flag.item())} of {self.world_size} ranks ({where})")

    def agree_step(self, step: Callable[[], Tensor], clock: Callable[[], float],
                   offset: float) -> tuple[float, float]:
        try:
            loss, failed = step().item(), 0.0
        except Exception as exc:
            if isinstance(exc, AgreedOutOfMemory) or not is_oom(exc):
                raise
            loss, failed = 0.0, 1.0
        elapsed = offset + clock() if self.rank == 0 else 0.0
        agreed = torch.tensor([failed, loss, elapsed], dtype=torch.float64, device=self.device)
        dist.all_reduce(agreed)
        n_failed, loss_sum, elapsed = agreed.tolist()
        if n_failed > 0:
            raise AgreedOutOfMemory(
                f"out of memory on {int(n_failed)} of {self.world_size} ranks (in a step)")
        return loss_sum / self.world_size, elapsed

    def on_rank0(self, fn: Callable[[], tuple[float, float]]) -> tuple[float, float]:
        values = torch.tensor(fn() if self.rank == 0 else (0.0, 0.0), dtype=torch.float64,
                              device=self.device)
        dist.broadcast(values, src=0)
        metric, seconds = values.tolist()
        return metric, seconds

    def decide(self, answer: bool) -> bool:
        flag = torch.tensor([float(answer)], device=self.device)
        dist.broadcast(flag, src=0)
        return bool(flag.item())

    def minimum(self, value: int) -> int:
        """The smallest of the ranks' values."""
        agreed = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.all_reduce(agreed, op=dist.ReduceOp.MIN)
        return int(agreed.item())

    def mean(self, values: list[float]) -> list[float]:
        """The ranks' values averaged element-wise."""
        agreed = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(agreed)
        return [v / self.world_size for v in agreed.tolist()]


class Agreed(DistributedDataParallel):
    """DDP whose forward pass ends with the ranks' agreement on an OOM (see module doc)."""

    def __init__(self, module: nn.Module, ranks: Ranks) -> None:
        ids = [ranks.device.index] if ranks.device.type == "cuda" else None
        super().__init__(module, device_ids=ids)
        self.ranks = ranks

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        try:
            out, failed = super().forward(*inputs, **kwargs), False
        except Exception as exc:
            if not is_oom(exc):
                raise
            out, failed = None, True
        self.ranks.agree_oom(failed, "in the forward pass")
        return out


def join(device: torch.device) -> Ranks:
    """Join the process group torch's launcher set up for this process ($RANK,
    $WORLD_SIZE, $MASTER_ADDR/PORT); a CUDA rank takes the device at its local rank, a
    CPU rank its share of the cores (unless $OMP_NUM_THREADS says), as torchrun does."""
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    elif "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["LOCAL_WORLD_SIZE"])))
    dist.init_process_group(backend_for(device),
                            timeout=datetime.timedelta(seconds=timeout_s()))
    return Ranks(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device)


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
