"""The profile's arithmetic: which batch sizes to time, the step-time fit and the knee.

The step-time model t(B) = alpha + beta * B (Pollux) is fitted by robust least
squares on relative residuals; B_sat = alpha / beta is where the fixed cost and the
per-sample cost are equal. Numbers in, numbers out (no torch), so every function is
tested exactly on synthetic step times.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from autobatch.errors import ConfigError

HUBER_K = 1.345  # Huber's threshold in robust standard deviations (95% efficiency)
FIT_ITERATIONS = 20
NOISE_MAX_BIG = 1024  # the noise scale's larger batch, at most (samples)


def auto_batch_sizes(max_batch: int) -> tuple[int, ...]:
    """Powers of two from 8 (smaller for tiny sets, keeping ~5 doublings) to max_batch,
    plus max_batch itself."""
    if max_batch < 1:
        raise ConfigError(f"max_batch must be >= 1, got {max_batch}")
    start = min(8, 1 << (max(1, max_batch // 16).bit_length() - 1))
    sizes = []
    size = start
    while size <= max_batch:
        sizes.append(size)
        size *= 2
    if sizes[-1] != max_batch:
        sizes.append(max_batch)
    return tuple(sizes)


@dataclass(frozen=True, kw_only=True)
class StepTimeFit:
    """t(B) = alpha + beta * B in seconds; error: RMS relative residual over all points."""

    alpha: float
    beta: float
    error: float

    @property
    def b_sat(self) -> float | None:
        return self.alpha / self.beta if self.beta > 0 else None


def _weighted_line(xs: Sequence[float], ys: Sequence[float],
                   ws: Sequence[float]) -> tuple[float, float]:
    """Weighted least squares for y = a + b x with a, b >= 0 (times cannot be negative)."""
    sw = sum(ws)
    sx = sum(w * x for w, x in zip(ws, xs))
    sy = sum(w * y for w, y in zip(ws, ys))
    sxx = sum(w * x * x for w, x in zip(ws, xs))
    sxy = sum(w * x * y for w, x, y in zip(ws, xs, ys))
    det = sw * sxx - sx * sx
    if det <= 1e-12 * sw * sxx:
        return sy / sw, 0.0
    b = (sw * sxy - sx * sy) / det
    a = (sy - b * sx) / sw
    if a < 0:
        return 0.0, sxy / sxx
    if b < 0:
        return sy / sw, 0.0
    return a, b


def fit_step_time(batch_sizes: Sequence[int], seconds: Sequence[float]) -> StepTimeFit:
    """Robust fit of t(B) = alpha + beta * B to median step times.

    Residuals are relative (times span 100x across sizes) and Huber-weighted by
    iterative reweighting, so one size timed during a burst of load barely moves it.
    """
    if len(batch_sizes) != len(seconds) or len(set(batch_sizes)) < 2:
        raise ConfigError(f"the fit needs step times at >= 2 distinct batch sizes, got "
                          f"{list(batch_sizes)}")
    if min(seconds) <= 0:
        raise ConfigError(f"step times must be > 0, got {list(seconds)}")
    base = [1.0 / t ** 2 for t in seconds]
    robust = [1.0] * len(seconds)
    for _ in range(FIT_ITERATIONS):
        a, b = _weighted_line(batch_sizes, seconds, [w * r for w, r in zip(base, robust)])
        rel = [(t - a - b * n) / t for n, t in zip(batch_sizes, seconds)]
        scale = 1.4826 * statistics.median(abs(r) for r in rel)
        if scale < 1e-12:
            break
        new = [min(1.0, HUBER_K * scale / abs(r)) if r else 1.0 for r in rel]
        if max(abs(x - y) for x, y in zip(new, robust)) < 1e-9:
            break
        robust = new
    error = math.sqrt(statistics.fmean(r * r for r in rel))
    return StepTimeFit(alpha=a, beta=b, error=error)


def _throughput_at(points: Sequence[tuple[int, float]], batch: float) -> float:
    """Samples/s at `batch`, interpolated linearly in log-log between measured sizes."""
    for (b0, s0), (b1, s1) in zip(points, points[1:]):
        if b0 <= batch <= b1:
            f = math.log(batch / b0) / math.log(b1 / b0)
            return math.exp(math.log(s0) + f * math.log(s1 / s0))
    raise ValueError(f"batch {batch} outside the measured range")


def find_knee(batch_sizes: Sequence[int], samples_per_s: Sequence[float],
              gain: float = 0.10) -> int | None:
    """The largest measured batch whose doubling still raises throughput by >= gain.

    The doubled size is read from the measurements (interpolated when not measured),
    so the knee follows the device's real curve, not the fitted line. When not even
    the smallest batch's doubling pays, the knee is the smallest batch; None when no
    batch can be doubled inside the measured range.
    """
    points = sorted(zip(batch_sizes, samples_per_s))
    largest = points[-1][0] if points else 0
    candidates = [(b, s) for b, s in points if 2 * b <= largest]
    if not candidates:
        return None
    paying = [b for b, s in candidates if _throughput_at(points, 2 * b) >= (1 + gain) * s]
    return paying[-1] if paying else candidates[0][0]


def noise_batch_sizes(max_batch: int, n_train: int) -> tuple[int, int]:
    """(b_small, b_big) for the noise scale: b_big a power of two that fits and leaves
    most of the set undrawn (<= N/4), b_small 16x smaller for a wide 1/B lever."""
    b_big = 1 << (max(1, min(NOISE_MAX_BIG, max_batch, n_train // 4)).bit_length() - 1)
    return max(1, b_big // 16), b_big


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)
