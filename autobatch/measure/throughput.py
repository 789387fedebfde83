"""Throughput profiler: time per step and per epoch vs batch size, and the noise scale.

`timing` times real training steps at each batch size; `step_fit` chooses the
sizes, fits the step-time model and finds the knee; `noise` estimates the critical
batch from a fresh copy of the model after a short warm-up training.
"""

from __future__ import annotations

import copy
import logging
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from autobatch.device import device_name, resolve_device, run_or_oom, synchronize
from autobatch.errors import ConfigError
from autobatch.files import JsonFile, json_safe
from autobatch.hyperparams import Hyperparams, Precision
from autobatch.measure.budget import noise_plan
from autobatch.measure.noise import NoiseEstimate, measure_noise
from autobatch.measure.step_fit import (
    auto_batch_sizes,
    find_knee,
    fit_step_time,
    noise_batch_sizes,
    spread,
)
from autobatch.measure.timing import REPEATS, SizeTiming, StepCallback, time_sizes
from autobatch.train import (
    Clock,
    RunSetup,
    check_data,
    evaluate,
    fresh_model,
    setup_run,
    val_batches,
)
from autobatch.train.precision import check_precision
from autobatch.workloads import Workload

log = logging.getLogger(__name__)

EVAL_REPEATS = 3
# Waiting for data for more than this fraction of an iteration means the input
# pipeline, not the model, sets the pace: a larger batch will not help.
INPUT_BOUND_FRACTION = 0.25
NOISE_WARMUP_STEPS = 200  # training steps before the noise scale means anything
NOISE_DRAWS = 64
UNMEASURED = "not timed within the stage budget"


@dataclass(frozen=True, kw_only=True)
class ProfileRow:
    """One batch size. Times in seconds; None where the size was not measured.

    iter_s: median time per training iteration (data, forward, backward, step) over
    `repeats`, with iter_s_min/max the spread. epoch_s: a training epoch at this
    batch, steps_per_epoch x iter_s. data_wait: median fraction of an iteration spent
    waiting for the next batch; input_bound when it is >= INPUT_BOUND_FRACTION.
    fits False with a reason: above the maximum batch, or out of memory.
    """

    batch_size: int
    fits: bool
    reason: str | None = None
    iter_s: float | None = None
    iter_s_min: float | None = None
    iter_s_max: float | None = None
    samples_per_s: float | None = None
    steps_per_epoch: int | None = None
    epoch_s: float | None = None
    data_wait: float | None = None
    input_bound: bool = False
    repeats: int = 0
    steps_per_repeat: int = 0
    warmup_steps: int = 0


@dataclass(frozen=True, kw_only=True)
class ProfileResult(JsonFile):
    """A throughput profile of one workload on one device.

    Step model t(B) = alpha + beta * B seconds (alpha, beta, b_sat = alpha / beta,
    fit_error = RMS relative residual; None with < 2 measured sizes). knee: the
    largest batch whose doubling still raises samples/s by >= knee_gain.
    eval_pass_s: one pass over the validation set (at the workload's eval batch size,
    so the same for every training batch). train_size: samples per epoch.
    seconds: wall time the profile took. threads: torch's intra-op CPU threads.
    precision, channels_last: how the timed steps trained (batch = one micro-batch).
    """

    workload: str
    device: str
    train_size: int
    max_batch: int
    rows: tuple[ProfileRow, ...]
    alpha: float | None
    beta: float | None
    b_sat: float | None
    fit_error: float | None
    knee: int | None
    knee_gain: float
    eval_pass_s: float | None
    noise: NoiseEstimate | None
    seconds: float
    torch_version: str
    threads: int
    cut: str | None = None  # what the stage budget left out (None: nothing)
    precision: str = "fp32"
    channels_last: bool = False
    ranks: int = 1  # data-parallel ranks of each step; batch sizes are global batches

    what = "profile"

    def predict_iter_s(self, batch_size: int, grad_accum: int = 1) -> float | None:
        """The fitted time per optimizer step at `batch_size`, in seconds: grad_accum
        micro-batches of batch_size / grad_accum each (alpha is paid per micro-batch)."""
        if self.alpha is None or self.beta is None:
            return None
        return grad_accum * self.alpha + self.beta * batch_size

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON-safe: non-finite floats become None."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["rows"] = [vars(row) for row in self.rows]
        data["noise"] = self.noise.to_dict() if self.noise else None
        return json_safe(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProfileResult:
        fields = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        fields["rows"] = tuple(ProfileRow(**row) for row in data["rows"])
        fields["noise"] = NoiseEstimate.from_dict(data["noise"]) if data["noise"] else None
        return cls(**fields)


def profile_row(size: SizeTiming, n_train: int) -> ProfileRow:
    if size.oom:
        return ProfileRow(batch_size=size.batch_size, fits=False, reason="out of memory")
    if not size.iter_s:
        return ProfileRow(batch_size=size.batch_size, fits=False, reason=UNMEASURED)
    iter_s, low, high = spread(size.iter_s)
    wait = statistics.median(size.data_wait)
    steps_per_epoch = n_train // size.batch_size
    return ProfileRow(
        batch_size=size.batch_size, fits=True, iter_s=iter_s, iter_s_min=low,
        iter_s_max=high, samples_per_s=size.batch_size / iter_s,
        steps_per_epoch=steps_per_epoch, epoch_s=steps_per_epoch * iter_s, data_wait=wait,
        input_bound=wait >= INPUT_BOUND_FRACTION, repeats=len(size.iter_s),
        steps_per_repeat=size.steps_per_repeat, warmup_steps=size.warmup_steps)


def profile_recipe(workload: Workload) -> Hyperparams:
    """The reference recipe (it shapes the noise warm-up; step time barely depends on
    the LR); without one, SGD at batch 32, LR 0.01, momentum 0.9."""
    return workload.reference or Hyperparams(batch_size=32, lr=0.01, momentum=0.9)


def _eval_pass_s(setup: RunSetup, workload: Workload, device: torch.device,
                 clock: Clock) -> float:
    val = val_batches(workload, device)
    evaluate(setup.model, workload, val, setup.policy)  # warm-up pass: new shapes
    times = []
    for _ in range(EVAL_REPEATS):
        synchronize(device)
        started = clock()
        evaluate(setup.model, workload, val, setup.policy)
        synchronize(device)
        times.append(clock() - started)
    return statistics.median(times)


def profile(workload: Workload, *, device: str | torch.device = "auto",
            batch_sizes: Sequence[int] | None = None, max_batch: int | None = None,
            knee_gain: float = 0.10, noise: bool = True, seed: int = 0,
            clock: Clock = time.perf_counter, progress: StepCallback | None = None,
            budget_s: float | None = None, precision: Precision = "fp32",
            channels_last: bool = False) -> ProfileResult:
    """Profile time per iteration, samples/s and time per epoch against batch size, the
    steps trained in `precision` and memory format (see train.precision).

    batch_sizes: None for powers of two from 8 up to max_batch, plus max_batch.
    max_batch: the largest batch that fits (the memory probe's answer when there is
    one); default and upper limit: the training set size. Sizes above it are reported
    as not fitting. knee_gain in (0, 1): see ProfileResult.knee. noise: also estimate
    the gradient noise scale B_simple (critical batch) after a short warm-up training.
    progress: told of each measurement and of the noise scale as they start.
    budget_s: the most seconds it may take (see measure.budget): sizes not timed by
    then are left out (at least two are timed), the noise scale gets what fits.

    The workload's model is copied and trained with its own optimizer and a forked
    RNG, so neither a model the factory hands out nor the global RNG is touched.
    """
    if not 0 < knee_gain < 1:
        raise ConfigError(f"knee_gain must be in (0, 1), got {knee_gain!r}")
    if max_batch is not None and max_batch < 1:
        raise ConfigError(f"max_batch must be >= 1, got {max_batch}")
    if batch_sizes is not None and (not batch_sizes or min(batch_sizes) < 1):
        raise ConfigError(f"batch_sizes must be integers >= 1, got {list(batch_sizes)}")
    started = clock()
    deadline = started + budget_s if budget_s is not None else math.inf
    dev = resolve_device(device)
    check_precision(workload, precision, channels_last, dev)
    n_train = len(workload.train_data)
    limit = min(max_batch or n_train, n_train)
    wanted = auto_batch_sizes(limit) if batch_sizes is None else sorted(set(batch_sizes))
    sizes = [SizeTiming(batch_size=b) for b in wanted if b <= limit]
    above = "larger than the training set" if limit == n_train else f"above max_batch {limit}"

    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        # Never trained: the noise scale starts afresh from a copy of it.
        initial = fresh_model(workload, seed=seed, private=True)
        # each timed step is one micro-batch: t(B) is per forward-backward pass
        config = replace(profile_recipe(workload), grad_accum=1, precision=precision,
                         channels_last=channels_last)
        timing = setup_run(workload, config, dev, model=copy.deepcopy(initial))
        check_data(workload, min((s.batch_size for s in sizes), default=1), timing.model, dev)
        time_sizes(sizes, timing, workload, dev, seed, clock, progress, deadline)
        eval_pass_s = _eval_pass_s(timing, workload, dev, clock)
        del timing
        rows = {s.batch_size: profile_row(s, n_train) for s in sizes}
        measured = [r for r in rows.values() if r.fits]
        fit = (fit_step_time([r.batch_size for r in measured], [r.iter_s for r in measured])
               if len({r.batch_size for r in measured}) >= 2 else None)
        cuts = [f"{len(measured)} of {len(sizes)} batch sizes timed"] \
            if any(r.reason == UNMEASURED for r in rows.values()) else []
        fewest = min((r.repeats for r in measured), default=REPEATS)
        cuts += [f"{fewest} of {REPEATS} repeats"] if fewest < REPEATS else []
        estimate = None
        # below the smallest size that ran out of memory while timing
        noise_limit = min([limit] + [s.batch_size - 1 for s in sizes if s.oom])
        b_small, b_big = noise_batch_sizes(noise_limit, n_train)
        warmup_batch = min(config.batch_size, noise_limit)
        plan = (NOISE_WARMUP_STEPS, NOISE_DRAWS) if budget_s is None else (
            noise_plan(lambda b: fit.alpha + fit.beta * b, b_small=b_small, b_big=b_big,
                       warmup_batch=warmup_batch, warmup_steps=NOISE_WARMUP_STEPS,
                       draws=NOISE_DRAWS, left_s=deadline - clock()) if fit else None)

        def noise_scale(warmup_steps: int, draws: int) -> NoiseEstimate:
            # A fresh copy, so the checkpoint does not depend on how many steps the
            # timing happened to take: the same seed gives the same estimate.
            run = setup_run(workload, config, dev, model=copy.deepcopy(initial))
            return measure_noise(
                run.model, run.optimizer, workload, dev, b_small=b_small, b_big=b_big,
                draws=draws, warmup_steps=warmup_steps, warmup_batch=warmup_batch,
                seed=seed, clock=clock,
                progress=progress and (lambda step: progress(f"gradient noise scale: {step}")))

        if noise and b_big >= 2 and plan is None:
            cuts.append("no noise scale")
        elif noise and b_big >= 2:
            if plan != (NOISE_WARMUP_STEPS, NOISE_DRAWS):
                cuts.append(f"noise scale from {plan[1]} draws after {plan[0]} steps")
            if progress is not None:
                progress(f"gradient noise scale: {plan[1]} draws at batch {b_small} "
                         f"and {b_big}")
            estimate = run_or_oom(lambda: noise_scale(*plan), dev)
            if estimate is None:
                log.warning("noise scale not measured: out of memory at batch %d", b_big)

    rows.update({b: ProfileRow(batch_size=b, fits=False, reason=above)
                 for b in wanted if b > limit})
    knee = find_knee([r.batch_size for r in measured], [r.samples_per_s for r in measured],
                     knee_gain)
    return ProfileResult(
        workload=workload.name, device=device_name(dev), train_size=n_train, max_batch=limit,
        rows=tuple(rows[b] for b in sorted(rows)),
        alpha=fit.alpha if fit else None, beta=fit.beta if fit else None,
        b_sat=fit.b_sat if fit else None, fit_error=fit.error if fit else None,
        knee=knee, knee_gain=knee_gain, eval_pass_s=eval_pass_s, noise=estimate,
        seconds=clock() - started,
        torch_version=torch.__version__, threads=torch.get_num_threads(),
        precision=precision, channels_last=channels_last,
        cut=f"stage budget: {', '.join(cuts)}" if cuts else None)
