"""The prior: what the measurements say before any trial.

The probe bounds the batch, the profile and the noise scale predict the best batch
B* = sqrt(B_sat * B_crit) and cap where more batch stops paying, the LR range test
bounds the LR (the peak of a schedule) as a guide, not a cage: the study searches
PRIOR_WIDEN x beyond its range on either side and up to the reference recipe's LR, and
starts inside it; a sweep that does not look like training (measure.lr_range.sweep_doubt)
is set aside for a wide range around the reference recipe's LR. The profiled step time
says how many epochs fit in one trial's budget at the anchor batch: decaying schedules
search horizons from a tenth of that (at least one epoch) to all of it, and the
warmup at the anchor batch up to a quarter of the middle horizon (seeds: a twentieth,
the common 5%). From these come the search space, the time buckets of the pruner, and
the configurations the study tries first.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from autobatch.config import DEFAULT_TRIAL_BUDGET_S, SearchBounds
from autobatch.device import cache_location
from autobatch.events import EventCallback, TuneEvent
from autobatch.hyperparams import AUTO, Hyperparams, Precision
from autobatch.measure import LRRange, ProbeResult, ProfileResult, lr_range_test, probe, profile
from autobatch.measure.budget import PROBE_SHARE, PROFILE_SHARE, STAGE_SHARE, sweep_steps
from autobatch.measure.cache import cached
from autobatch.measure.lr_range import SWEEP_STEPS, sweep_doubt
from autobatch.measure.timing import StepCallback
from autobatch.measure.trust import profile_doubt, retaken, trusted
from autobatch.schedule import DECAYING, SCHEDULE_NAMES
from autobatch.search.precision_choice import (
    choose_precision,
    largest_global_batch,
    study_precisions,
)
from autobatch.search.space import (
    SearchSpace,
    accumulation,
    anchor_lr0,
    batch_candidates,
    nearest_power_of_two,
    predicted_best_batch,
)
from autobatch.workloads import Workload

# Time buckets start after this many steps at the predicted best batch.
BUCKET_BASE_STEPS = 30
# Seeded trials start at this fraction of the LR range test's loss minimum: the
# minimum itself sits at the edge of stability.
SEED_LR_FRACTION = 1 / 3
# Decaying schedules' horizons span this factor below what fits in a trial's budget:
# a wider span puts the seeds' middle horizon where the decay ends long before a run
# of a constant LR reaches the target (8 of the 22 epochs that mnist1d-cnn needs).
HORIZON_SPAN = 10
# The warmup at the anchor batch is searched up to this share of the middle horizon;
# seeded trials warm up for SEED_WARMUP of that bound.
WARMUP_SHARE = 0.25
SEED_WARMUP = 0.2
# The study searches this factor beyond the LR range test's range on either side.
PRIOR_WIDEN = 3.0
# A set-aside sweep's stand-in: this span around the reference recipe's LR (lr0)...
FALLBACK_SPAN = (1 / 100, 10.0)
# ...or, without a reference recipe, these LRs (the sweep's own span, less its edges).
FALLBACK_LR_RANGE = (1e-4, 1.0)


def usable_reference(workload: Workload, bounds: SearchBounds) -> Hyperparams | None:
    """The workload's reference recipe when its LR means something in the space (same
    optimizer), else None."""
    ref = workload.reference
    return ref if ref is not None and ref.optimizer == bounds.optimizer else None


def wide_lr_range(reference_lr0: float | None) -> tuple[float, float]:
    """The LR0 range searched without a usable LR range test: around the reference
    recipe's LR, or FALLBACK_LR_RANGE without one."""
    if reference_lr0 is None:
        return FALLBACK_LR_RANGE
    return reference_lr0 * FALLBACK_SPAN[0], reference_lr0 * FALLBACK_SPAN[1]


def prior_lr_range(sweep: LRRange, reference_lr0: float | None) -> tuple[tuple[float, float],
                                                                        str | None]:
    """The LR0 bounds the study searches and, when the sweep was set aside, why."""
    doubt = sweep_doubt(sweep, reference_lr0)
    if doubt is not None:
        return wide_lr_range(reference_lr0), doubt
    low, high = sweep.low / PRIOR_WIDEN, sweep.high * PRIOR_WIDEN
    if reference_lr0 is not None:
        low, high = min(low, reference_lr0 / 2), max(high, reference_lr0 * 2)
    return (low, high), None


@dataclass(frozen=True, kw_only=True)
class Prior:
    """What the measurements say before any trial; stored in the study to resume."""

    probe: ProbeResult
    profile: ProfileResult
    lr_range: LRRange | None
    b_star: float
    space: SearchSpace
    bucket_base: float
    lr_doubt: str | None = None  # why the LR range test's range was set aside
    # --precision auto: each candidate's profiled seconds per sample (None: not chosen)
    precision_figures: dict[str, float | None] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"probe": self.probe.to_dict(), "profile": self.profile.to_dict(),
                "lr_range": self.lr_range.to_dict() if self.lr_range else None,
                "b_star": self.b_star, "space": self.space.to_dict(),
                "bucket_base": self.bucket_base, "lr_doubt": self.lr_doubt,
                "precision_figures": self.precision_figures}

    def seed_lr0(self) -> float:
        """Where the study starts: a third of the trusted sweep's loss minimum, else the
        middle of the searched range (0: the LR is fixed)."""
        if self.lr_range is not None and self.lr_doubt is None:
            return self.lr_range.lr_at_min_loss * SEED_LR_FRACTION
        if self.space.lr_range is not None:
            return math.sqrt(self.space.lr_range[0] * self.space.lr_range[1])
        return 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Prior:
        return cls(probe=ProbeResult.from_dict(data["probe"]),
                   profile=ProfileResult.from_dict(data["profile"]),
                   lr_range=LRRange.from_dict(data["lr_range"]) if data["lr_range"] else None,
                   b_star=data["b_star"], space=SearchSpace.from_dict(data["space"]),
                   bucket_base=data["bucket_base"], lr_doubt=data.get("lr_doubt"),
                   precision_figures=data.get("precision_figures"))


def cached_profile(workload: Workload, device: torch.device, max_batch: int, seed: int,
                   use_cache: bool, progress: StepCallback | None = None,
                   deadline: float = math.inf, numerics: tuple[Precision, bool] = ("fp32", False),
                   ) -> tuple[ProfileResult, str | None]:
    """The throughput profile, from the cache when this workload, device, batch range and
    thread count were profiled before (a profile of a shared machine is noisy anyway;
    reusing it keeps later stages consistent and cheap). --no-cache measures afresh.
    A profile failing its quality bar (measure.trust) is retaken once and never cached;
    the second string is the warning when the retake fails too. deadline (perf_counter):
    the profile is cut to end by then (measure.budget), and a cut one is not cached.
    numerics: (precision, channels_last) of the timed steps."""
    precision, channels_last = numerics
    key = (f"{workload.fingerprint()}-{cache_location(device)}-{max_batch}"
           f"-t{torch.get_num_threads()}-s{seed}"
           + (f"-{precision}{'-cl' if channels_last else ''}" if numerics != ("fp32", False)
              else ""))
    doubts: list[str] = []

    def measure() -> ProfileResult:
        result, doubt = retaken(lambda: profile(
            workload, device=device, max_batch=max_batch, seed=seed, progress=progress,
            precision=precision, channels_last=channels_last,
            budget_s=None if math.isinf(deadline) else deadline - time.perf_counter()))
        doubts.extend([doubt] if doubt else [])
        return result

    result = cached("profile", key, measure, ProfileResult.load, use_cache=use_cache,
                    trusted=lambda found: trusted(found) and found.cut is None)
    return result, doubts[0] if doubts else None


def steps(emit: EventCallback, stage: str) -> StepCallback:
    """A long stage's progress lines as 'progress' events of that stage."""
    return lambda message: emit(TuneEvent("progress", stage, message))


def measure_prior(workload: Workload, bounds: SearchBounds, device: torch.device,
                  emit: EventCallback, *, headroom: float, memory_limit: int | None,
                  use_cache: bool, seed: int,
                  trial_budget_s: float = DEFAULT_TRIAL_BUDGET_S,
                  saved_profile: ProfileResult | None = None,
                  budget_s: float | None = None) -> Prior:
    """Probe, profile (both cached), LR range test; the search space they define within
    the user's bounds. headroom, memory_limit: the probe's (see measure.probe);
    trial_budget_s: one trial's training time (bounds the schedules' horizons);
    saved_profile: the user's own (`tune --profile`), used instead of profiling;
    budget_s: the most seconds the three may take (measure.budget; None: no limit)."""
    deadline = time.perf_counter() + budget_s if budget_s is not None else math.inf
    # with accumulation the probe answers the largest micro-batch; a fixed batch fixes it
    low, high = ((bounds.batch_size, bounds.batch_size) if bounds.batch_size is not None
                 and bounds.grad_accum == 1 else (bounds.min_batch, bounds.max_batch))
    if bounds.batch_size is not None and isinstance(bounds.grad_accum, int):
        low = high = bounds.batch_size // bounds.grad_accum

    def measured(precision: Precision) -> tuple[tuple[ProbeResult, ProfileResult],
                                                 ProfileResult]:
        tag = f" ({precision})" if len(precisions) > 1 else ""
        emit(TuneEvent("stage", "probe", f"finding the largest batch that fits{tag}"))
        left = deadline - time.perf_counter()
        fit = probe(workload, device=device, min_batch=low, max_batch=high,
                    headroom=headroom, memory_limit=memory_limit, use_cache=use_cache,
                    progress=steps(emit, "probe"), precision=precision,
                    channels_last=bounds.channels_last,
                    deadline=time.perf_counter() + PROBE_SHARE * max(0.0, left)
                    if math.isfinite(left) else None)
        emit(TuneEvent("stage", "probe", f"largest batch that fits: {fit.max_batch_size}"
                       f"{' (cached)' if fit.from_cache else ''}"))
        if fit.limited_by == "time":
            emit(TuneEvent("stage", "warning", f"the probe stopped at batch "
                           f"{fit.max_batch_size}: a larger batch's measurement would "
                           f"overrun its share of the stage budget ({STAGE_SHARE:.0%} of "
                           "--timeout); the study searches batches up to it"))
        if saved_profile is not None:
            prof, profile_warning = saved_profile, profile_doubt(saved_profile)
            emit(TuneEvent("stage", "profile", f"the saved profile of {prof.workload} on "
                           f"{prof.device} (batch up to {prof.max_batch})"))
        else:
            emit(TuneEvent("stage", "profile", f"timing steps against batch size{tag}"))
            left = deadline - time.perf_counter()
            prof, profile_warning = cached_profile(
                workload, device, fit.max_batch_size, seed, use_cache, steps(emit, "profile"),
                deadline=time.perf_counter() + PROFILE_SHARE * max(0.0, left),
                numerics=(precision, bounds.channels_last))
        if profile_warning:
            emit(TuneEvent("stage", "warning", profile_warning))
        if prof.cut:
            emit(TuneEvent("stage", "warning", f"the profile was cut short ({prof.cut}; "
                           f"{STAGE_SHARE:.0%} of --timeout for probe, profile and LR range)"))
        return (fit, prof), prof

    precisions = ((saved_profile.precision,) if saved_profile is not None
                  else study_precisions(bounds, device))
    choice = choose_precision(precisions, measured)
    if len(precisions) > 1:
        emit(TuneEvent("stage", "precision", choice.words()))
    fit, prof = choice.measured
    micro_max = fit.max_batch_size
    fixed_accum = bounds.grad_accum if isinstance(bounds.grad_accum, int) else 1

    def accum(batch: int) -> int:
        return fixed_accum if bounds.grad_accum != AUTO else accumulation(batch, micro_max)

    b_sat = prof.b_sat if prof.b_sat and math.isfinite(prof.b_sat) else fit.max_batch_size
    b_crit = prof.noise.b_simple if prof.noise and prof.noise.b_simple else b_sat
    b_star = predicted_best_batch(b_sat, b_crit)
    emit(TuneEvent("stage", "profile",
                   f"B_sat {b_sat:.0f}, B_simple {b_crit:.0f}, knee {prof.knee}, "
                   f"predicted best batch {b_star:.0f}"))
    if bounds.batch_size is not None:
        batches = [bounds.batch_size]
    else:
        top = largest_global_batch(bounds, micro_max, len(workload.train_data))
        batches = [b for b in batch_candidates(
            min_batch=max(bounds.min_batch, fit.min_batch), max_batch=top, b_star=b_star,
            knee=prof.knee or micro_max) if b % fixed_accum == 0] or [top - top % fixed_accum]
    anchor = nearest_power_of_two(b_star, batches) if bounds.batch_size is None \
        else bounds.batch_size
    sweep, doubt = None, None
    lr_range = bounds.lr_range
    if bounds.lr is None and lr_range is None:
        reference = usable_reference(workload, bounds)
        reference_lr0 = anchor_lr0(reference, anchor) if reference else None
        n = SWEEP_STEPS if math.isinf(deadline) else sweep_steps(
            prof.predict_iter_s(anchor, accum(anchor)) or 0.0, steps=SWEEP_STEPS,
            left_s=deadline - time.perf_counter())
        if n is None:
            lr_range = wide_lr_range(reference_lr0)
            doubt = "no time was left in the stage budget for the LR range test"
        else:
            emit(TuneEvent("stage", "lr_range", f"LR range test at batch {anchor}"))
            sweep = lr_range_test(workload, batch_size=anchor, device=device, seed=seed,
                                  steps=n, progress=steps(emit, "lr_range"),
                                  numerics={"grad_accum": accum(anchor),
                                          "precision": choice.precision,
                                          "channels_last": bounds.channels_last})
            lr_range, doubt = prior_lr_range(sweep, reference_lr0)
            emit(TuneEvent("stage", "lr_range", f"LR range {sweep.low:.3g} .. "
                           f"{sweep.high:.3g}; searching {lr_range[0]:.3g} .. "
                           f"{lr_range[1]:.3g}"))
        if doubt:
            emit(TuneEvent("stage", "warning", f"{doubt}: searching the wide LR range "
                           f"{lr_range[0]:.3g} .. {lr_range[1]:.3g} instead"))
    step_s = prof.predict_iter_s(anchor, accum(anchor)) or 0.01
    schedules = SCHEDULE_NAMES if bounds.schedule == "auto" else (bounds.schedule,)
    horizon_range = None
    if set(schedules) & set(DECAYING):
        epochs = max(1.0, trial_budget_s / step_s * anchor / len(workload.train_data))
        horizon_range = (max(1.0, epochs / HORIZON_SPAN), epochs)
    # a fixed shape keeps its warmup out of the search
    warmup_max = (WARMUP_SHARE * math.sqrt(horizon_range[0] * horizon_range[1])
                  if len(schedules) > 1 else 0.0)
    space = SearchSpace(batch_sizes=tuple(batches), anchor_batch=anchor, lr_range=lr_range,
                        lr_fixed=bounds.lr, momentum_range=bounds.momentum_range,
                        momentum_fixed=bounds.momentum, optimizer=bounds.optimizer,
                        schedules=schedules, horizon_range=horizon_range,
                        warmup_max=warmup_max, grad_accum=fixed_accum,
                        micro_max=micro_max if bounds.grad_accum == AUTO else None,
                        precision=choice.precision, channels_last=bounds.channels_last)
    return Prior(probe=fit, profile=prof, lr_range=sweep, b_star=b_star, space=space,
                 bucket_base=BUCKET_BASE_STEPS * step_s, lr_doubt=doubt,
                 precision_figures=choice.seconds_per_sample if len(precisions) > 1 else None)
