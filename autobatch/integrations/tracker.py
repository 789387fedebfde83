"""A framework trainer's run, accounted as autobatch's loop accounts its own.

The framework's callback tells the Tracker what happened (a step, a validation about to
start, its metric) and obeys what it answers (stop, validate now). The Tracker keeps
the clock of training seconds (the device synchronised before each read, validation
excluded), the budget and the target, the recipe's LR schedule per step, hands every
evaluation to the study's on_eval, and builds the RunResult, so a trial trained by
Lightning or Hugging Face means the same as one trained by autobatch's loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import torch

from autobatch.config import RunConfig
from autobatch.device import reset_peak_memory, synchronize
from autobatch.errors import WorkloadError
from autobatch.train import EvalCallback, EvalPoint, RunResult
from autobatch.train.loop import (
    FIRST_EVAL_S,
    Clock,
    StopReason,
    next_eval_at,
    run_limits,
    run_result,
    run_schedule,
)
from autobatch.workloads import Workload


class Tracker:
    def __init__(self, workload: Workload, config: RunConfig, device: torch.device,
                 on_eval: EvalCallback | None, *, metric: str,
                 clock: Clock = time.perf_counter) -> None:
        self.workload, self.config, self.device = workload, config, device
        self.metric = metric  # the key the framework logs the validation metric under
        self.schedule = run_schedule(workload, config)
        self.max_steps, self.max_seconds, self.max_samples = run_limits(
            workload, config, self.schedule)
        self._on_eval, self._clock = on_eval, clock
        self.trace: list[EvalPoint] = []
        self.steps = self.samples = 0
        self.trained = self.eval_total = 0.0
        self._loss_sum, self._loss_count = 0.0, 0
        self._next_eval = FIRST_EVAL_S
        self._started: float | None = None
        self._eval_started: float | None = None
        self._peaks: list[float] = []
        self.stop: StopReason | None = None
        self.hit: EvalPoint | None = None

    def start(self, optimizer: torch.optim.Optimizer) -> None:
        """Training begins: the optimizer's LRs are the peaks the schedule multiplies."""
        self._peaks = [group["lr"] for group in optimizer.param_groups]
        synchronize(self.device)
        reset_peak_memory(self.device)
        self._started = self._clock()

    def set_lr(self, optimizer: torch.optim.Optimizer) -> None:
        """Before a step: each group's LR is its peak times the schedule at this step."""
        multiplier = self.schedule.lr_at(self.steps)
        for group, peak in zip(optimizer.param_groups, self._peaks, strict=True):
            group["lr"] = peak * multiplier

    def elapsed(self) -> float:
        if self._started is None:  # paused (validating) or not started
            return self.trained
        synchronize(self.device)
        return self.trained + self._clock() - self._started

    def stepped(self, samples: int, loss: float) -> bool:
        """After an optimizer step: True when the run must stop (diverged, budget)."""
        if self.stop is not None:
            return True
        self.steps += 1
        self.samples += samples
        elapsed = self.elapsed()
        if not math.isfinite(loss) or loss < 0:
            return self._end(elapsed, "diverged")
        self._loss_sum += loss
        self._loss_count += 1
        if (self.steps >= self.max_steps or elapsed >= self.max_seconds
                or self.samples >= self.max_samples):
            return self._end(elapsed, "budget")
        return False

    def due(self) -> bool:
        """Whether an evaluation is due now (geometric in training time, as the loop)."""
        return self.stop is None and self.config.target is not None \
            and self.elapsed() >= self._next_eval

    def evaluating(self) -> None:
        """A validation starts: the training clock pauses."""
        if self.stop is None and self._started is not None:
            self.trained = self.elapsed()
            self._started = None
        self._eval_started = self._clock()

    def evaluated(self, metrics: Mapping[str, Any]) -> bool:
        """A validation ended with these logged metrics: True when the run must stop
        (target reached, or on_eval says stop)."""
        if self.stop is not None or self._eval_started is None:
            return self.stop is not None
        if self.metric not in metrics:
            keys = ", ".join(sorted(metrics)) or "none"
            raise WorkloadError(f"workload {self.workload.name!r} never logged metric "
                                f"{self.metric!r} during validation (it logged: {keys})")
        synchronize(self.device)
        eval_seconds = self._clock() - self._eval_started
        self.eval_total += eval_seconds
        self._eval_started = None
        point = EvalPoint(
            train_seconds=self.trained, steps=self.steps, samples=self.samples,
            epochs=self.samples / len(self.workload.train_data),
            train_loss=self._loss_sum / max(self._loss_count, 1),
            metric=float(metrics[self.metric]), eval_seconds=eval_seconds,
            lr=self._peaks[0] * self.schedule.lr_at(max(self.steps - 1, 0))
            if self._peaks else None)
        self.trace.append(point)
        self._loss_sum, self._loss_count = 0.0, 0
        if self.config.target is not None and point.metric >= self.config.target:
            self.hit = point
            return self._end(self.trained, "target")
        if self._on_eval is not None and self._on_eval(point):
            return self._end(self.trained, "stopped")
        self._next_eval = next_eval_at(self.trained, eval_seconds, self.config)
        self._started = self._clock()
        return False

    def _end(self, trained: float, reason: StopReason) -> bool:
        self.trained, self.stop, self._started = trained, reason, None
        return True

    def result(self) -> RunResult:
        if self._started is not None:  # the framework ended the run itself
            self.trained = self.elapsed()
        return run_result(self.workload, self.device, self.config, self.trace, self.hit,
                          steps=self.steps, samples=self.samples, trained=self.trained,
                          eval_total=self.eval_total, stop=self.stop, schedule=self.schedule)
