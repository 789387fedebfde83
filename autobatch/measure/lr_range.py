"""LR range test: an exponential LR sweep that yields a *range* to search, never a point.

Single-point suggestions from such sweeps are unreliable (the minimum of a noisy,
smoothed curve moves with the seed and the smoothing), so the study searches the
whole range between where the loss starts to fall and where it blows up.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from itertools import islice
from typing import Any

import torch

from autobatch.device import resolve_device
from autobatch.hyperparams import Hyperparams
from autobatch.measure.timing import StepCallback
from autobatch.train import setup_run, train_batches
from autobatch.workloads import Workload

SMOOTHING = 0.9
# The sweep stops once the smoothed loss exceeds this multiple of its minimum.
DIVERGE_FACTOR = 4.0
LOW_SPAN = 30.0
HIGH_SPAN = 5.0
# A sweep is trusted only when its smoothed loss fell below this share of its start,
# its lowest point past this share of its steps (not at its start)...
CLEAR_FALL = 0.98
MIN_AT_SHARE = 0.1
# ...and its range does not top out this factor below the workload's reference LR.
SUSPECT_BELOW = 10.0
PROGRESS_EVERY = 20  # sweep steps between progress reports
SWEEP_STEPS = 100


@dataclass(frozen=True, kw_only=True)
class LRRange:
    """The sweep and the range it suggests (LRs for the sweep's batch and momentum)."""

    low: float
    high: float
    lr_at_min_loss: float
    batch_size: int
    momentum: float
    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LRRange:
        return cls(**{**data, "lrs": tuple(data["lrs"]), "losses": tuple(data["losses"])})


def sweep_lrs(start: float, stop: float, steps: int) -> list[float]:
    """`steps` LRs spaced geometrically from start to stop inclusive."""
    ratio = (stop / start) ** (1.0 / (steps - 1))
    return [start * ratio**i for i in range(steps)]


def smooth(losses: list[float], beta: float = SMOOTHING) -> list[float]:
    """Bias-corrected exponential moving average (as in the fastai/Lightning finders)."""
    out, avg = [], 0.0
    for i, loss in enumerate(losses, start=1):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta**i))
    return out


def suggest_range(lrs: list[float], losses: list[float]) -> tuple[float, float, float]:
    """(low, high, lr_at_min) from a sweep's raw losses.

    high: the last LR before the smoothed loss exceeds 2x its minimum (the edge of
    stability, where the fastest runs live), at most HIGH_SPAN x the minimum's LR
    because the smoothed curve lags a fast sweep; low: LOW_SPAN x below the
    minimum's LR, where training still progresses, only slowly.
    """
    finite = [(lr, loss) for lr, loss in zip(lrs, losses) if math.isfinite(loss)]
    if len(finite) < 3:
        raise ValueError("the LR sweep diverged at once: lower its start LR")
    f_lrs = [lr for lr, _ in finite]
    smoothed = smooth([loss for _, loss in finite])
    best = min(range(len(smoothed)), key=smoothed.__getitem__)
    lr_min = f_lrs[best]
    high = lr_min
    for lr, value in zip(f_lrs[best:], smoothed[best:]):
        if value > 2.0 * smoothed[best]:
            break
        high = lr
    return lr_min / LOW_SPAN, min(high, lr_min * HIGH_SPAN), lr_min


def sweep_doubt(sweep: LRRange, reference_lr: float | None = None) -> str | None:
    """Why this sweep's range is not to be trusted (None: it is): the smoothed loss
    never fell clearly below where it started, or was lowest in the sweep's first
    tenth (the sweep saw no training at all, or stopped on noise), or the range tops
    out far below the reference recipe's LR (reference_lr: at the sweep's batch and
    momentum), a configuration known to train."""
    start = sorted(sweep.losses[:5])[len(sweep.losses[:5]) // 2] if sweep.losses else 0.0
    smoothed = smooth(list(sweep.losses))
    lowest = min(smoothed, default=math.inf)
    at = smoothed.index(lowest) if smoothed else 0
    if not math.isfinite(start) or not lowest <= CLEAR_FALL * start \
            or at < MIN_AT_SHARE * len(smoothed):
        return (f"the LR range test's loss never fell clearly (lowest {lowest:.4g} against "
                f"{start:.4g} at the start)")
    if reference_lr is not None and sweep.high * SUSPECT_BELOW < reference_lr:
        return (f"the LR range test's range tops out at {sweep.high:.3g}, more than "
                f"{SUSPECT_BELOW:g}x below the reference recipe's {reference_lr:.3g}")
    return None


def lr_range_test(workload: Workload, *, batch_size: int, momentum: float = 0.9,
                  device: str | torch.device = "auto", start: float = 1e-5,
                  stop: float = 10.0, steps: int = SWEEP_STEPS, seed: int = 0,
                  progress: StepCallback | None = None,
                  numerics: dict[str, Any] | None = None) -> LRRange:
    """Sweep the LR geometrically over `steps` updates at `batch_size` from a fresh model.
    progress: told every PROGRESS_EVERY steps ("step 20 of 100, LR 0.000158").
    numerics: the Hyperparams fields grad_accum, precision, channels_last of the steps."""
    began = time.perf_counter()
    dev = resolve_device(device)
    setup = setup_run(workload, Hyperparams(batch_size=batch_size, lr=start, momentum=momentum,
                                            **(numerics or {})), dev, seed=seed)
    optimizer = setup.optimizer
    lrs = sweep_lrs(start, stop, steps)
    batches = train_batches(workload, batch_size, dev, seed=seed)
    losses: list[float] = []
    best = math.inf
    for step, (lr, (x, y)) in enumerate(zip(lrs, islice(batches, steps))):
        if progress is not None and step % PROGRESS_EVERY == 0:
            progress(f"step {step} of {steps}, LR {lr:.3g}")
        for group in optimizer.param_groups:
            group["lr"] = lr
        losses.append(setup.step(workload, x, y).item())
        smoothed = smooth(losses)[-1]  # recomputed in full: at most `steps` short sums
        best = min(best, smoothed)
        if not math.isfinite(losses[-1]) or smoothed > DIVERGE_FACTOR * best:
            break
    low, high, lr_min = suggest_range(lrs[:len(losses)], losses)
    return LRRange(low=low, high=high, lr_at_min_loss=lr_min, batch_size=batch_size,
                   momentum=momentum, lrs=tuple(lrs[:len(losses)]),
                   losses=tuple(x if math.isfinite(x) else 1e308 for x in losses),
                   seconds=time.perf_counter() - began)
