"""The batch-size search: the largest batch whose peak memory fits a byte budget.

Pure arithmetic over a `measure(batch) -> Measurement` oracle (no torch), so the
sequence of batches tried is tested exactly with fake oracles.

Strategy: peak memory is close to linear in the batch, peak(B) = fixed + per_sample * B.
Measure a small batch and one `growth` times larger, fit the line, jump to the batch
the line predicts for the budget, and verify it. A verified point corrects the line
(interpolating between the tightest fitting and failing batches once both are known).
Bisection is used only where the line was proved wrong: a batch it predicted to fit
ran out of memory without reporting a peak. The search stops once the next
candidate would gain less than `tolerance`, or after `max_attempts` measurements.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["fit", "over_budget", "oom"]


@dataclass(frozen=True, kw_only=True)
class Measurement:
    """What one candidate batch did: ran out of memory, or finished with this peak (bytes)."""

    oom: bool
    peak_bytes: int | None = None


@dataclass(frozen=True, kw_only=True)
class Trial:
    """One batch tried by the search and its verdict against the budget."""

    batch_size: int
    outcome: Outcome
    peak_bytes: int | None


@dataclass(frozen=True, kw_only=True)
class LinearFit:
    """peak = fixed_bytes + bytes_per_sample * batch, least squares over `points` batches.

    r2 is None with fewer than three points (two points always fit exactly);
    max_rel_error is the largest |residual| / measured peak.
    """

    fixed_bytes: float
    bytes_per_sample: float
    r2: float | None
    max_rel_error: float
    points: int

    def predict_max(self, budget_bytes: float) -> float:
        """The (fractional) batch whose predicted peak equals the budget; inf if flat."""
        if self.bytes_per_sample <= 0:
            return math.inf
        return (budget_bytes - self.fixed_bytes) / self.bytes_per_sample


LimitedBy = Literal["memory", "max_batch", "nothing_fits"]


@dataclass(frozen=True, kw_only=True)
class SearchResult:
    """batch_size is None when not even the smallest batch fits."""

    batch_size: int | None
    limited_by: LimitedBy
    trials: tuple[Trial, ...]
    fit: LinearFit | None


def fit_line(points: Sequence[tuple[int, int]]) -> LinearFit | None:
    """Least-squares line through (batch, peak) points; None with fewer than two batches."""
    if len({b for b, _ in points}) < 2:
        return None
    n = len(points)
    mean_b = sum(b for b, _ in points) / n
    mean_p = sum(p for _, p in points) / n
    sbb = sum((b - mean_b) ** 2 for b, _ in points)
    sbp = sum((b - mean_b) * (p - mean_p) for b, p in points)
    slope = sbp / sbb
    fixed = mean_p - slope * mean_b
    residuals = [p - (fixed + slope * b) for b, p in points]
    spp = sum((p - mean_p) ** 2 for _, p in points)
    r2 = None if n < 3 else (1.0 - sum(r * r for r in residuals) / spp if spp > 0 else 1.0)
    max_rel = max(abs(r) / p for r, (_, p) in zip(residuals, points, strict=True) if p > 0)
    return LinearFit(fixed_bytes=fixed, bytes_per_sample=slope, r2=r2,
                     max_rel_error=max_rel, points=n)


def search(measure: Callable[[int], Measurement], *, min_batch: int, max_batch: int,
           budget_bytes: float, growth: int = 8, max_extrapolation: int = 32,
           tolerance: float = 0.02, max_attempts: int = 10,
           on_trial: Callable[[Trial, int], None] | None = None) -> SearchResult:
    """The largest batch in [min_batch, max_batch] whose measured peak is <= budget_bytes.

    growth: factor from the first batch to the second small one. max_extrapolation:
    never jump further than this multiple of the largest measured batch (the line is
    too uncertain); take a `growth` step instead. tolerance: stop when a candidate
    would add less than this fraction to the best fitting batch. on_trial: told of
    each measured candidate and how many have been measured so far.
    """
    if not 1 <= min_batch <= max_batch:
        raise ValueError(f"need 1 <= min_batch <= max_batch, got {min_batch}, {max_batch}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    trials: list[Trial] = []

    def attempt(batch: int) -> Trial:
        m = measure(batch)
        if m.oom:
            outcome: Outcome = "oom"
        else:
            outcome = "fit" if m.peak_bytes is not None and m.peak_bytes <= budget_bytes \
                else "over_budget"
        trial = Trial(batch_size=batch, outcome=outcome, peak_bytes=m.peak_bytes)
        trials.append(trial)
        if on_trial is not None:
            on_trial(trial, len(trials))
        return trial

    if attempt(min_batch).outcome != "fit":
        return SearchResult(batch_size=None, limited_by="nothing_fits", trials=tuple(trials),
                            fit=_fit(trials))
    lo, hi = min_batch, max_batch + 1  # lo fits; hi is the smallest known failure
    while len(trials) < max_attempts and hi - lo > 1:
        candidate = _next_candidate(trials, lo, hi, max_batch, budget_bytes, growth,
                                    max_extrapolation, tolerance)
        if candidate is None:
            break
        if attempt(candidate).outcome == "fit":
            lo = candidate
        else:
            hi = candidate
    return SearchResult(batch_size=lo, limited_by="max_batch" if lo == max_batch else "memory",
                        trials=tuple(trials), fit=_fit(trials))


def _fit(trials: Sequence[Trial]) -> LinearFit | None:
    return fit_line([(t.batch_size, t.peak_bytes) for t in trials if t.peak_bytes is not None])


def _next_candidate(trials: Sequence[Trial], lo: int, hi: int, max_batch: int,
                    budget: float, growth: int, max_extrapolation: int,
                    tolerance: float) -> int | None:
    peaks = {t.batch_size: t.peak_bytes for t in trials if t.peak_bytes is not None}
    fit = _fit(trials)
    hi_known = hi <= max_batch
    if fit is None:  # one point: a second, larger small batch to get a slope
        return min(lo * growth, hi - 1)
    if hi_known and hi in peaks and lo in peaks and peaks[hi] > peaks[lo]:
        # Bracketed by two measured peaks: the local secant beats the global line.
        predicted = lo + (budget - peaks[lo]) * (hi - lo) / (peaks[hi] - peaks[lo])
    else:
        predicted = fit.predict_max(budget)
    largest = max(peaks)
    if not hi_known and predicted >= 2 * max_batch:
        return max_batch  # even a line twice as steep would fit the largest batch
    if predicted > largest * max_extrapolation and largest * growth < hi - 1:
        return largest * growth
    if predicted >= hi:
        if not hi_known:
            return max_batch
        # The line said `hi` fits and it ran out of memory: the line is wrong here.
        target = (lo + hi) // 2
    else:
        target = math.floor(predicted)
    if target <= lo or (target - lo) < tolerance * lo:
        return None
    return min(target, hi - 1)
