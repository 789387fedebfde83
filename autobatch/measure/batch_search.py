"""The batch-size search: the largest batch whose peak memory, plus its run-to-run
spread, fits a byte budget.

Pure arithmetic over a `measure(batch) -> Measurement` oracle (no torch), so the
sequence of batches tried is tested exactly with fake oracles.

Strategy: peak memory is close to linear in the batch, peak(B) = fixed + per_sample * B.
Measure a small batch and one `growth` times larger, fit the line, jump to the batch
the line predicts for the budget, and verify it. A verified point corrects the line
(interpolating between the tightest fitting and failing batches once both are known).
Bisection is used only where the line was proved wrong: a batch it predicted to fit
ran out of memory without reporting a peak.

Identical runs do not peak alike (on CPU the peak RSS of fresh processes varies by a
few percent), so once the search is close (its next candidate would add less than
`near`, or one attempt is left) it measures the largest fitting batch again: the range
of that batch's peaks, or twice the line's largest residual if larger, is the spread.
From then on a batch fits when its worst peak plus the spread is within the budget,
and candidates aim at the budget less the spread. The search stops once the next
candidate would gain less than `tolerance` or less than the spread's worth of samples
(a measurement could not tell it apart), or after `max_attempts` measurements, the
repeat included. The answer is the largest batch the memory model puts within the
budget less the spread (`largest_fitting`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
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
    repeat: bool = False  # a batch measured again to learn the spread of its peak


@dataclass(frozen=True, kw_only=True)
class LinearFit:
    """peak = fixed_bytes + bytes_per_sample * batch, least squares over `points` batches.

    r2 is None with fewer than three points (two points always fit exactly);
    max_rel_error is the largest |residual| / measured peak; max_residual_bytes the
    largest |residual|.
    """

    fixed_bytes: float
    bytes_per_sample: float
    r2: float | None
    max_rel_error: float
    points: int
    max_residual_bytes: float = 0.0

    def predict_max(self, budget_bytes: float) -> float:
        """The (fractional) batch whose predicted peak equals the budget; inf if flat."""
        if self.bytes_per_sample <= 0:
            return math.inf
        return (budget_bytes - self.fixed_bytes) / self.bytes_per_sample


LimitedBy = Literal["memory", "max_batch", "time", "nothing_fits"]


@dataclass(frozen=True, kw_only=True)
class SearchResult:
    """batch_size is None when not even the smallest batch fits. spread_bytes: the range
    of the repeated batch's peaks (None when nothing was repeated). peak_bytes: the worst
    peak at batch_size, measured, or predicted when it lies between measurements.
    Trial outcomes are judged with the final spread."""

    batch_size: int | None
    limited_by: LimitedBy
    trials: tuple[Trial, ...]
    fit: LinearFit | None
    spread_bytes: int | None = None
    peak_bytes: int | None = None


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
                     max_rel_error=max_rel, points=n,
                     max_residual_bytes=max(abs(r) for r in residuals))


def search(measure: Callable[[int], Measurement], *, min_batch: int, max_batch: int,
           budget_bytes: float, growth: int = 8, max_extrapolation: int = 32,
           tolerance: float = 0.02, near: float = 0.1, max_attempts: int = 6,
           on_trial: Callable[[Trial, int], None] | None = None,
           affordable: Callable[[int], int] | None = None) -> SearchResult:
    """The largest batch in [min_batch, max_batch] whose peak plus spread is <= budget_bytes.

    growth: factor from the first batch to the second small one. max_extrapolation:
    never jump further than this multiple of the largest measured batch (the line is
    too uncertain); take a `growth` step instead. tolerance: stop when a candidate
    would add less than this fraction to the best fitting batch. near: repeat the best
    fitting batch once the next candidate would add less than this fraction. on_trial:
    told of each measurement and how many have been made so far. affordable: the largest
    batch the time left can measure up to the one given (asked from the third batch on);
    once it cut one the answer is the largest batch run (limited_by 'time')."""
    if not 1 <= min_batch <= max_batch or max_attempts < 1:
        raise ValueError(f"need 1 <= min_batch <= max_batch and max_attempts >= 1, got "
                         f"{min_batch}, {max_batch}, {max_attempts}")
    trials: list[Trial] = []
    spread: int | None = None

    def attempt(batch: int, repeat: bool = False) -> None:
        m = measure(batch)
        trial = Trial(batch_size=batch, outcome=_outcome(m.oom, m.peak_bytes, budget_bytes,
                                                         spread or 0),
                      peak_bytes=None if m.oom else m.peak_bytes, repeat=repeat)
        trials.append(trial)
        if on_trial is not None:
            on_trial(trial, len(trials))

    time_cut = False  # a candidate was cut to what the time left could measure
    attempt(min_batch)
    while trials[0].outcome == "fit" and len(trials) < max_attempts:
        lo, hi = _bracket(worst_peaks(trials), budget_bytes, spread or 0, max_batch)
        if lo is None:  # the spread pushed even the smallest batch over the budget
            break
        gain = _min_gain(lo, _fit(trials), spread or 0, tolerance)
        candidate = None if hi - lo <= 1 else _next_candidate(
            trials, lo, hi, max_batch, budget_bytes - (spread or 0), growth,
            max_extrapolation, gain)
        if candidate and affordable and len(trials) > 1 \
                and (allowed := affordable(candidate)) < candidate:
            time_cut = True
            candidate = allowed if allowed - lo >= max(1.0, gain) else None
        if spread is None and (candidate is None or candidate - lo < near * lo
                               or len(trials) == max_attempts - 1):
            if affordable and len(trials) > 1 and affordable(lo) < lo:
                break
            attempt(lo, repeat=True)
            spread = _spread([t.peak_bytes for t in trials if t.batch_size == lo],
                             budget_bytes, _fit(trials))
        elif candidate is None:
            break
        else:
            attempt(candidate)
    fit = _fit(trials)
    judged = tuple(replace(t, outcome=_outcome(t.peak_bytes is None, t.peak_bytes,
                                               budget_bytes, spread or 0)) for t in trials)
    lo, _ = _bracket(worst_peaks(judged), budget_bytes, spread or 0, max_batch)
    cap = lo if time_cut and lo is not None else max_batch  # no answer past what was run
    found = None if lo is None else largest_fitting(
        judged, fit, budget_bytes, spread or 0, cap,
        reach=_min_gain(lo, fit, spread or 0, tolerance))
    if found is None:
        return SearchResult(batch_size=None, limited_by="nothing_fits", trials=judged,
                            fit=fit, spread_bytes=spread)
    batch, peak = found
    limit = "memory" if batch < cap else "max_batch" if cap == max_batch else "time"
    return SearchResult(batch_size=batch, limited_by=limit,
                        trials=judged, fit=fit, spread_bytes=spread, peak_bytes=peak)


def worst_peaks(trials: Sequence[Trial]) -> dict[int, int | None]:
    """Each measured batch's worst peak: None once any of its runs ran out of memory."""
    worst: dict[int, int | None] = {}
    for t in trials:
        seen = worst.get(t.batch_size, 0)
        worst[t.batch_size] = None if seen is None or t.peak_bytes is None \
            else max(seen, t.peak_bytes)
    return worst


def largest_fitting(trials: Sequence[Trial], fit: LinearFit | None, budget_bytes: float,
                    spread_bytes: int, max_batch: int,
                    reach: float | None = None) -> tuple[int, int] | None:
    """(batch, predicted worst peak) for the largest batch whose peak plus spread stays
    within budget_bytes; None when no measured batch does.

    The model is anchored at the largest fitting measured batch's worst peak and grows
    with the steeper of the fitted slope and the secant to the smallest failing batch
    (the line is optimistic where memory grows faster than linearly), never reaching
    that failing batch, and not past the anchor when that batch ran out of memory
    where the model said it fits. reach caps how many samples past the anchor it may go (the
    search passes its own resolution); None: up to the failure.
    """
    worst = worst_peaks(trials)
    lo, hi = _bracket(worst, budget_bytes, spread_bytes, max_batch)
    if lo is None:
        return None
    anchor = worst[lo]
    assert anchor is not None  # a fitting batch has a peak
    slope = fit.bytes_per_sample if fit is not None else 0.0
    top = worst.get(hi)
    if top is not None and top > anchor:
        slope = max(slope, (top - anchor) / (hi - lo))
    extra = hi - 1 - lo
    if hi in worst and top is None and (fit is None or fit.fixed_bytes + fit.bytes_per_sample
                                        * hi + spread_bytes <= budget_bytes):
        extra = 0  # the model said the failing batch fits and it ran out of memory
    elif slope > 0:
        extra = min(extra, math.floor((budget_bytes - spread_bytes - anchor) / slope))
    elif fit is None:
        extra = 0  # one batch measured: no model to go beyond it
    if reach is not None:
        extra = min(extra, math.floor(reach))
    return lo + extra, round(anchor + max(slope, 0.0) * extra)


def _outcome(oom: bool, peak: int | None, budget: float, spread: int) -> Outcome:
    if oom or peak is None:
        return "oom"
    return "fit" if peak + spread <= budget else "over_budget"


def _bracket(worst: dict[int, int | None], budget: float, spread: int,
             max_batch: int) -> tuple[int | None, int]:
    """(the largest fitting batch below every failing one, or None; the smallest failing
    batch, or max_batch + 1)."""
    def fits(peak: int | None) -> bool:
        return peak is not None and peak + spread <= budget

    hi = min((b for b, p in worst.items() if not fits(p)), default=max_batch + 1)
    return max((b for b, p in worst.items() if b < hi and fits(p)), default=None), hi


def _spread(peaks: Sequence[int | None], budget: float, fit: LinearFit | None) -> int:
    """The range of one batch's peaks, and no less than twice the line's largest
    residual: each measured peak is one draw around the line, so two draws at one
    batch (a small sample) can agree by chance. A run that ran out of memory passed
    the budget, so its batch varied by at least the budget less its lowest peak."""
    measured = [p for p in peaks if p is not None]
    scatter = round(2 * fit.max_residual_bytes) if fit is not None else 0
    if len(measured) < len(peaks):
        return max(scatter, math.ceil(budget - min(measured)))
    return max(scatter, max(measured) - min(measured))


def _min_gain(lo: int, fit: LinearFit | None, spread: int, tolerance: float) -> float:
    """Samples a further candidate must add: tolerance x lo, and no fewer than the
    spread's worth (a smaller step is within the measurement noise)."""
    per_sample = fit.bytes_per_sample if fit is not None else 0.0
    return max(tolerance * lo, spread / per_sample if per_sample > 0 else 0.0)


def _fit(trials: Sequence[Trial]) -> LinearFit | None:
    return fit_line([(t.batch_size, t.peak_bytes) for t in trials if t.peak_bytes is not None])


def _next_candidate(trials: Sequence[Trial], lo: int, hi: int, max_batch: int,
                    budget: float, growth: int, max_extrapolation: int,
                    min_gain: float) -> int | None:
    peaks = {b: p for b, p in worst_peaks(trials).items() if p is not None}
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
    if target <= lo or (target - lo) < min_gain:
        return None
    return min(target, hi - 1)
