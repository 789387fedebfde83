"""Timing training steps per batch size, as `train.run` trains.

Per batch size: warm up until the step time is stable (the first steps at a new
shape run 10-50x slower), then time REPEATS repeats of a few real training steps
(`train_step` on the workload's own `TrainBatches`, the loss read back each step as
`run` does, so an epoch here costs what it costs there). Repeats of in-memory data
are interleaved across sizes so a burst of load from another process spreads over
all sizes instead of skewing one.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from autobatch.device import is_oom, release_memory, synchronize
from autobatch.train import Batch, Clock, RunSetup, train_batches
from autobatch.workloads import TensorData, Workload

log = logging.getLogger(__name__)

REPEATS = 5
MAX_WARMUP_STEPS = 30
STABLE_WINDOW = 5  # warm-up ends once this many consecutive steps agree ...
STABLE_SPREAD = 0.15  # ... within this fraction of their median
REPEAT_SECONDS = 0.01  # a repeat is at least this long, so clock jitter stays < 1%
MAX_REPEAT_STEPS = 20
# What the long stages (profile, LR range test) tell as they go: one short line.
StepCallback = Callable[[str], None]


@dataclass(kw_only=True)
class SizeTiming:
    """One batch size's timings so far (mutable): seconds per iteration and the fraction
    of each spent waiting for data, one per repeat."""

    batch_size: int
    batches: Iterator[Batch] | None = None
    warmup_steps: int = 0
    steps_per_repeat: int = 1
    iter_s: list[float] = field(default_factory=list)
    data_wait: list[float] = field(default_factory=list)
    oom: bool = False


def _steps(setup: RunSetup, workload: Workload, batches: Iterator[Batch], n: int,
           device: torch.device, clock: Clock) -> tuple[float, float]:
    """(seconds, seconds waiting for data) of n training steps, synchronised."""
    wait = 0.0
    synchronize(device)
    started = clock()
    for _ in range(n):
        fetch = clock()
        x, y = next(batches)
        wait += clock() - fetch
        setup.step(workload, x, y).item()  # as run() does: syncs
    synchronize(device)
    return clock() - started, wait


def _predicted_s(size: SizeTiming, sizes: list[SizeTiming]) -> float:
    """What measuring `size` next takes: a repeat at its own step time once it has one,
    else a warm-up's STABLE_WINDOW steps and a repeat, a step taking the largest timed
    size's time per sample (an overestimate: a sample costs less in a larger batch)."""
    if size.iter_s:
        return size.steps_per_repeat * size.iter_s[-1]
    nearest = max((s for s in sizes if s.iter_s), key=lambda s: s.batch_size)
    step_s = nearest.iter_s[-1] * size.batch_size / nearest.batch_size
    return STABLE_WINDOW * step_s + max(step_s, REPEAT_SECONDS)


def _warm_up(size: SizeTiming, run_steps: Callable[[int], tuple[float, float]]) -> None:
    """Step until STABLE_WINDOW consecutive steps agree, or MAX_WARMUP_STEPS."""
    times: list[float] = []
    while len(times) < MAX_WARMUP_STEPS:
        times.append(run_steps(1)[0])
        window = times[-STABLE_WINDOW:]
        if len(window) == STABLE_WINDOW:
            mid = statistics.median(window)
            if max(window) - min(window) <= STABLE_SPREAD * mid:
                break
    size.warmup_steps = len(times)
    step_s = statistics.median(times[-STABLE_WINDOW:])
    size.steps_per_repeat = max(1, min(MAX_REPEAT_STEPS, math.ceil(REPEAT_SECONDS / step_s)))


def time_sizes(sizes: list[SizeTiming], setup: RunSetup, workload: Workload,
               device: torch.device, seed: int, clock: Clock,
               progress: StepCallback | None = None, deadline: float = math.inf) -> None:
    """Warm up and time every size with `setup`'s model and optimizer; a size that runs
    out of memory is marked (oom) and skipped from then on. progress: told before each
    measurement ("batch 256: measurement 7 of 30"). deadline (on `clock`): once two
    sizes have a measurement, none starts that is predicted to end after it (see
    _predicted_s): a large batch's warm-up alone can take minutes."""
    # In-memory batches cost nothing to keep, so repeats go round-robin over sizes;
    # a DataLoader keeps worker processes per size, so those sizes run one by one.
    interleave = isinstance(workload.train_data, TensorData)
    order = ([(r, s) for r in range(REPEATS) for s in sizes] if interleave
             else [(r, s) for s in sizes for r in range(REPEATS)])
    for done, (repeat, size) in enumerate(order):
        if size.oom:
            continue
        if repeat > 0 and not size.iter_s:
            continue  # left out of the first round: never warmed up
        if sum(bool(s.iter_s) for s in sizes) >= 2 \
                and clock() + _predicted_s(size, sizes) > deadline:
            size.batches = None
            continue
        if progress is not None:
            progress(f"batch {size.batch_size}: measurement {done + 1} of {len(order)}")
        try:
            if size.batches is None:
                size.batches = iter(train_batches(workload, size.batch_size, device,
                                                  seed=seed + size.batch_size))

            def run_steps(n: int, size: SizeTiming = size) -> tuple[float, float]:
                return _steps(setup, workload, size.batches, n, device, clock)

            if repeat == 0:
                _warm_up(size, run_steps)
            seconds, wait = run_steps(size.steps_per_repeat)
            size.iter_s.append(seconds / size.steps_per_repeat)
            size.data_wait.append(wait / seconds if seconds > 0 else 0.0)
        except Exception as exc:
            if not is_oom(exc):
                raise
            log.warning("batch %d ran out of memory while profiling", size.batch_size)
            size.oom = True
        if size.oom or repeat == REPEATS - 1:
            size.batches = None  # frees DataLoader workers / device tensors
        if size.oom:
            # Released outside the except block (its traceback pins the tensors) and
            # after the batches and gradients are dropped, which run_or_oom cannot wait for.
            setup.optimizer.zero_grad(set_to_none=True)
            release_memory(device)
