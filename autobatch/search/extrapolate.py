"""Learning-curve extrapolation: the time to target predicted from a partial curve.

A trial paused at a rung has a curve of (seconds of training, validation metric). The
family fitted is the saturating power law

    metric(t) = m - a * t^(-c),    a > 0, c > 0, m <= 1,

(Domhan et al. 2015's "pow3" family, the one that fits most accuracy curves of SGD):
m is the plateau it tends to, c how fast it gets there. For a fixed c the model is
linear in (m, a), so each c has a closed-form least-squares fit; c is found by a log
grid refined by golden-section search, which needs no starting guess and cannot
diverge. Solving m - a T^(-c) = target gives the time to target T (infinite when the
plateau m lies below the target).

The uncertainty is a residual bootstrap: the fitted curve plus resampled residuals,
refitted RESAMPLES times (seeded; on a grid of c, all at once in numpy), gives an
interval for T and the share of fits that reach the target at all. Numbers in,
numbers out: tested on synthetic curves whose answer is known.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

C_RANGE = (0.02, 4.0)
GRID = 40
BOOTSTRAP_GRID = 120  # the bootstrap's fits: a finer grid of c, not refined
REFINE = 30
RESAMPLES = 200
MIN_POINTS = 4
GOLDEN = (math.sqrt(5) - 1) / 2


@dataclass(frozen=True, kw_only=True)
class CurveFit:
    """metric(t) = m - a * t^(-c) fitted to a curve; sse: its sum of squared residuals."""

    m: float
    a: float
    c: float
    sse: float

    def metric_at(self, seconds: float) -> float:
        return self.m - self.a * seconds ** -self.c

    def time_to(self, target: float) -> float:
        """Seconds of training until the curve reaches `target` (inf: never)."""
        if self.m <= target:
            return math.inf
        if self.a <= 0:
            return 0.0
        return (self.a / (self.m - target)) ** (1.0 / self.c)


def _grid_fits(c: np.ndarray, times: np.ndarray, metrics: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares of metric = m - a * x, x = t^(-c), for every c (G values) and every
    row of metrics (R curves) at once: (m, a, sse), each G x R; m <= 1, a >= 0."""
    x = times[None, :] ** -c[:, None]  # G x n
    mean_x, mean_y = x.mean(axis=1), metrics.mean(axis=1)
    dx = x - mean_x[:, None]
    sxx = (dx * dx).sum(axis=1)
    sxy = dx @ (metrics - mean_y[:, None]).T  # G x R
    a = np.maximum(0.0, -sxy / np.where(sxx > 0, sxx, np.inf)[:, None])
    m = mean_y[None, :] + a * mean_x[:, None]
    # a metric in [0, 1] cannot tend above 1: where it would, refit a with m at 1
    capped = np.maximum(0.0, (x @ (1.0 - metrics).T) / (x * x).sum(axis=1)[:, None])
    a, m = np.where(m > 1.0, capped, a), np.minimum(m, 1.0)
    residual = metrics[None, :, :] - (m[:, :, None] - a[:, :, None] * x[:, None, :])
    return m, a, (residual ** 2).sum(axis=2)


def _best(c: np.ndarray, times: np.ndarray, metrics: np.ndarray) -> list[CurveFit]:
    """Each curve's best fit over the values of c."""
    m, a, sse = _grid_fits(c, times, metrics)
    best = sse.argmin(axis=0)
    cols = np.arange(metrics.shape[0])
    return [CurveFit(m=float(m[i, j]), a=float(a[i, j]), c=float(c[i]), sse=float(sse[i, j]))
            for i, j in zip(best, cols)]


def _points(times: Sequence[float], metrics: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    kept = [(t, y) for t, y in zip(times, metrics) if t > 0 and math.isfinite(y)]
    return np.array([t for t, _ in kept], dtype=float), np.array([y for _, y in kept])


def fit_curve(times: Sequence[float], metrics: Sequence[float]) -> CurveFit | None:
    """The best fit of the family to the points with t > 0 (None: fewer than
    MIN_POINTS of them): a log grid of c, then golden-section search in log c
    between the best grid point's neighbours."""
    ts, ys = _points(times, metrics)
    if len(ts) < MIN_POINTS:
        return None
    grid = np.geomspace(*C_RANGE, GRID)
    coarse = _best(grid, ts, ys[None, :])[0]
    i = int(np.searchsorted(grid, coarse.c))
    left, right = math.log(grid[max(0, i - 1)]), math.log(grid[min(GRID - 1, i + 1)])

    def sse(log_c: float) -> float:
        return _best(np.array([math.exp(log_c)]), ts, ys[None, :])[0].sse

    for _ in range(REFINE):
        p, q = right - GOLDEN * (right - left), left + GOLDEN * (right - left)
        if sse(p) <= sse(q):
            right = q
        else:
            left = p
    refined = _best(np.array([math.exp((left + right) / 2)]), ts, ys[None, :])[0]
    return refined if refined.sse <= coarse.sse else coarse


@dataclass(frozen=True, kw_only=True)
class Prediction:
    """The predicted time to target: the fit's, an interval (None: unbounded) over
    the bootstrap fits, and the share of those fits that reach the target at all."""

    seconds: float
    low: float | None
    high: float | None
    level: float
    reachable: float


def predict_time_to_target(times: Sequence[float], metrics: Sequence[float], target: float,
                           *, level: float = 0.8, resamples: int = RESAMPLES,
                           seed: int = 0) -> Prediction | None:
    """The time to target extrapolated from a partial curve (None: too few points)."""
    fit = fit_curve(times, metrics)
    if fit is None:
        return None
    ts, ys = _points(times, metrics)
    curve = fit.m - fit.a * ts ** -fit.c
    residuals = ys - curve
    rng = np.random.default_rng(seed)
    resampled = curve[None, :] + rng.choice(residuals, size=(resamples, len(ts)))
    grid = np.geomspace(*C_RANGE, BOOTSTRAP_GRID)
    found = [f.time_to(target) for f in _best(grid, ts, resampled)]
    # the grid's own bias, measured on the fitted curve itself, is taken out
    base = _best(grid, ts, curve[None, :])[0].time_to(target)
    if math.isfinite(fit.time_to(target)) and math.isfinite(base) and base > 0:
        found = [f * fit.time_to(target) / base for f in found]
    found.sort()
    tail = (1.0 - level) / 2

    def quantile(q: float) -> float | None:
        value = found[min(len(found) - 1, int(q * len(found)))]
        return value if math.isfinite(value) else None

    return Prediction(seconds=fit.time_to(target), low=quantile(tail), high=quantile(1 - tail),
                      level=level,
                      reachable=sum(math.isfinite(v) for v in found) / len(found))
