"""What a run reports: its evaluation points and its result."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

from autobatch.config import RunConfig
from autobatch.device import device_name, peak_memory
from autobatch.files import json_safe
from autobatch.schedule import CONSTANT, Schedule
from autobatch.workloads import Workload

StopReason = Literal["target", "budget", "diverged", "stopped", "paused"]


@dataclass(frozen=True)
class EvalPoint:
    """One evaluation: where training stood and what the validation metric was."""

    train_seconds: float
    steps: int
    samples: int
    epochs: float
    train_loss: float
    metric: float
    eval_seconds: float
    lr: float | None = None  # the LR of the last step before the evaluation (first group)


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """The outcome of one training run. Times in seconds; metric in [0, 1]."""

    workload: str
    device: str
    config: RunConfig
    target_reached: bool
    time_to_target_s: float | None
    steps_to_target: int | None
    samples_to_target: int | None
    steps: int
    samples: int
    epochs: float
    train_seconds: float
    eval_seconds: float
    samples_per_s: float
    best_metric: float | None
    final_metric: float | None
    stop_reason: StopReason
    trace: tuple[EvalPoint, ...]
    # the run's peak: max reserved bytes on CUDA; on CPU the process's peak resident
    # memory (framework and data included, what a container limit counts)
    peak_memory_bytes: int
    # config.schedule resolved to optimizer steps for this workload and batch
    schedule: Schedule = CONSTANT
    checkpoint: str | None = None  # where a paused run's checkpoint is (stop_reason 'paused')
    skipped_steps: int = 0  # fp16 steps the gradient scaler skipped (overflow), this call's

    def to_dict(self) -> dict[str, Any]:
        """A strict-JSON-safe dict (non-finite floats become None)."""
        return json_safe({**asdict(self),
                          "schedule": {**self.schedule.to_dict(), **self.schedule.steps()}})


def run_result(workload: Workload, dev: torch.device, config: RunConfig,
               trace: list[EvalPoint], hit: EvalPoint | None, *, steps: int, samples: int,
               trained: float, eval_total: float, stop: StopReason | None,
               schedule: Schedule, checkpoint: str | None = None,
               skipped_steps: int = 0) -> RunResult:
    """The RunResult of a finished run from its counters and evaluation trace."""
    metrics = [p.metric for p in trace]
    return RunResult(
        workload=workload.name, device=device_name(dev), config=config,
        target_reached=hit is not None,
        time_to_target_s=hit.train_seconds if hit else None,
        steps_to_target=hit.steps if hit else None,
        samples_to_target=hit.samples if hit else None,
        steps=steps, samples=samples, epochs=samples / len(workload.train_data),
        train_seconds=trained, eval_seconds=eval_total,
        samples_per_s=samples / trained if trained > 0 else 0.0,
        best_metric=max(metrics) if metrics else None,
        final_metric=metrics[-1] if metrics else None,
        stop_reason=stop or "budget", trace=tuple(trace),
        peak_memory_bytes=peak_memory(dev), schedule=schedule, checkpoint=checkpoint,
        skipped_steps=skipped_steps)
