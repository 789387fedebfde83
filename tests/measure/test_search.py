"""The batch-size search, against fake memory oracles: exact batches tried, the repeat
that measures the spread of the peak, and how the spread moves the answer."""

from __future__ import annotations

import math

import pytest

from autobatch.measure.batch_search import Measurement, fit_line, largest_fitting, search


def linear(fixed: float, per_sample: float, *, oom_from: int | None = None,
           quadratic: float = 0.0, again: float = 0.0):
    """An oracle whose peak is fixed + per_sample*b (+ quadratic*b^2); OOM from `oom_from`.
    again: added to the peak of every later run of a batch already measured (the
    run-to-run spread)."""
    tried: list[int] = []

    def measure(b: int) -> Measurement:
        noise = again if b in tried else 0.0
        tried.append(b)
        if oom_from is not None and b >= oom_from:
            return Measurement(oom=True)
        return Measurement(oom=False, peak_bytes=round(fixed + per_sample * b
                                                        + quadratic * b * b + noise))

    measure.tried = tried  # type: ignore[attr-defined]
    return measure


def test_search_linear_memory_jumps_to_the_predicted_maximum_and_verifies_it():
    oracle = linear(1000, 10)
    result = search(oracle, min_batch=1, max_batch=10_000, budget_bytes=2000)
    # The answer is measured again: identical peaks, no spread.
    assert [(t.batch_size, t.repeat) for t in result.trials] == [
        (1, False), (8, False), (100, False), (100, True)]
    assert result.batch_size == 100 and result.limited_by == "memory"
    assert result.spread_bytes == 0 and result.peak_bytes == 2000
    assert result.fit.fixed_bytes == pytest.approx(1000)
    assert result.fit.bytes_per_sample == pytest.approx(10)
    assert result.fit.r2 == pytest.approx(1.0)


def test_a_batch_the_time_left_cannot_measure_is_cut_and_caps_the_answer():
    oracle = linear(1000, 10)  # memory alone would answer 100 (see above)
    asked: list[int] = []

    def affordable(batch: int) -> int:
        asked.append(batch)
        return min(batch, 40)

    result = search(oracle, min_batch=1, max_batch=10_000, budget_bytes=2000,
                    affordable=affordable)
    assert [(t.batch_size, t.repeat) for t in result.trials] == [
        (1, False), (8, False), (40, False), (40, True)]  # 100 never measured
    assert result.batch_size == 40 and result.limited_by == "time"
    assert asked[0] == 100  # the first two batches are not asked about
    # once 40 is measured no time is left for its repeat: the answer rests on one run
    result = search(linear(1000, 10), min_batch=1, max_batch=10_000, budget_bytes=2000,
                    affordable=lambda b: min(b, 40) if b != 40 else 39)
    assert [t.batch_size for t in result.trials] == [1, 8, 40]
    assert result.batch_size == 40 and result.limited_by == "time"
    assert result.spread_bytes is None


def test_search_corrects_a_wrong_prediction_by_interpolating_measured_peaks():
    # Convex memory: the line from small batches overshoots; the over-budget peak
    # brackets the answer and the secant closes in without bisection.
    oracle = linear(1000, 10, quadratic=0.05)  # true maximum: 73
    result = search(oracle, min_batch=1, max_batch=10_000, budget_bytes=2000)
    # The line misses the curve by some 60 bytes: twice that is the spread (a misfit
    # counts as scatter), so 68 fits only without it and the answer stays below 73.
    assert [(t.batch_size, t.outcome) for t in result.trials] == [
        (1, "fit"), (8, "fit"), (95, "over_budget"), (68, "over_budget"),
        (68, "over_budget"), (65, "fit")]
    at_repeat = fit_line([(t.batch_size, t.peak_bytes) for t in result.trials[:5]])
    assert result.spread_bytes == round(2 * at_repeat.max_residual_bytes) > 100
    assert result.batch_size == 66  # one past 65, by the secant to 68


def test_search_bisects_only_where_an_oom_proved_the_line_wrong():
    # The line says 100 fits, but everything from 60 runs out of memory with no peak.
    oracle = linear(1000, 10, oom_from=60)
    result = search(oracle, min_batch=1, max_batch=10_000, budget_bytes=2000,
                    max_attempts=10)
    assert oracle.tried == [1, 8, 100, 54, 77, 65, 54, 59, 62]
    assert result.batch_size == 59  # the line was wrong at 62: no extrapolation past 59
    assert all(t.outcome == "oom" for t in result.trials if t.batch_size >= 60)


def test_search_steps_up_geometrically_before_extrapolating_far():
    oracle = linear(1000, 1)  # the line predicts 10,000: too far from 8 to trust
    result = search(oracle, min_batch=1, max_batch=100_000, budget_bytes=11_000)
    assert oracle.tried == [1, 8, 64, 512, 10_000, 10_000]
    assert result.batch_size == 10_000


def test_search_goes_straight_to_max_batch_when_memory_is_not_the_limit():
    oracle = linear(1000, 1)
    result = search(oracle, min_batch=1, max_batch=512, budget_bytes=1e9)
    assert oracle.tried == [1, 8, 512, 512]
    assert result.batch_size == 512 and result.limited_by == "max_batch"


def test_search_starts_at_min_batch_and_never_leaves_the_bounds():
    oracle = linear(1000, 10)
    result = search(oracle, min_batch=16, max_batch=60, budget_bytes=2000)
    assert oracle.tried == [16, 60, 60]
    assert result.batch_size == 60


def test_search_nothing_fits_at_min_batch_tries_once():
    oracle = linear(1000, 10, oom_from=1)
    result = search(oracle, min_batch=1, max_batch=100, budget_bytes=2000)
    assert oracle.tried == [1] and result.batch_size is None
    assert result.limited_by == "nothing_fits"


def test_search_over_budget_at_min_batch_is_nothing_fits():
    oracle = linear(5000, 10)
    result = search(oracle, min_batch=2, max_batch=100, budget_bytes=2000)
    assert [(t.batch_size, t.outcome, t.peak_bytes) for t in result.trials] == [
        (2, "over_budget", 5020)]
    assert result.batch_size is None


def test_search_flat_memory_jumps_to_max_batch():
    oracle = linear(1000, 0)
    result = search(oracle, min_batch=1, max_batch=4096, budget_bytes=2000)
    assert oracle.tried == [1, 8, 4096, 4096] and result.batch_size == 4096


@pytest.mark.parametrize("max_attempts", [1, 2, 3, 5])
def test_search_attempts_are_bounded(max_attempts):
    oracle = linear(1000, 10, oom_from=60)
    result = search(oracle, min_batch=1, max_batch=10_000, budget_bytes=2000,
                    max_attempts=max_attempts)
    assert len(oracle.tried) == max_attempts
    assert sum(t.repeat for t in result.trials) == (max_attempts > 1)  # the last is kept
    fitted = [t.batch_size for t in result.trials if t.outcome == "fit"]
    assert max(fitted) <= result.batch_size < 60


@pytest.mark.parametrize("kwargs", [dict(min_batch=0, max_batch=5),
                                    dict(min_batch=6, max_batch=5),
                                    dict(min_batch=1, max_batch=5, max_attempts=0)])
def test_search_rejects_bad_bounds(kwargs):
    with pytest.raises(ValueError):
        search(linear(1, 1), budget_bytes=10, **kwargs)


def test_fit_line_reports_quality():
    assert fit_line([(1, 10)]) is None
    two = fit_line([(1, 10), (3, 30)])
    assert two.r2 is None and two.bytes_per_sample == pytest.approx(10)
    noisy = fit_line([(1, 110), (2, 190), (4, 420), (8, 800)])
    assert 0.95 < noisy.r2 < 1.0 and noisy.max_rel_error > 0
    assert fit_line([(1, 5), (2, 5)]).predict_max(100) == math.inf


def test_search_measures_the_spread_and_keeps_peak_plus_spread_within_the_budget():
    # The second run of a batch peaks 60 bytes higher: 100 fits once, not twice.
    oracle = linear(1000, 10, again=60)
    result = search(oracle, min_batch=1, max_batch=10_000, budget_bytes=2000)
    assert [(t.batch_size, t.outcome, t.repeat) for t in result.trials] == [
        (1, "fit", False), (8, "fit", False), (100, "over_budget", False),
        (100, "over_budget", True), (88, "fit", False)]
    assert result.spread_bytes == 60
    # The largest batch whose peak in any run (+60) stays within the budget is 94; the
    # search stops 6 samples (the spread's worth) short of what it could resolve.
    chosen = result.batch_size
    assert 88 < chosen <= 94
    assert result.peak_bytes + result.spread_bytes <= 2000
    assert 1000 + 10 * chosen + 60 <= 2000


def test_a_repeat_that_runs_out_of_memory_makes_its_batch_fail():
    tried: list[int] = []

    def measure(b: int) -> Measurement:  # 100 fits once, then is killed at the limit
        again = b in tried
        tried.append(b)
        if again and b == 100:
            return Measurement(oom=True)
        return Measurement(oom=False, peak_bytes=1000 + 10 * b)

    result = search(measure, min_batch=1, max_batch=10_000, budget_bytes=2000)
    assert [(t.batch_size, t.outcome) for t in result.trials][2:4] == [(100, "fit"),
                                                                     (100, "oom")]
    assert result.spread_bytes == 0  # at least the budget less the measured 2000
    assert result.batch_size < 100  # one of its runs ran out of memory


@pytest.mark.parametrize("oracle", [linear(1000, 10), linear(1000, 10, again=60),
                                    linear(1000, 10, quadratic=0.05),
                                    linear(1000, 10, oom_from=60), linear(1000, 1),
                                    linear(9e8, 2.6e6, again=2e7)])
def test_search_takes_at_most_six_candidates_the_repeat_included(oracle):
    result = search(oracle, min_batch=1, max_batch=10_000, budget_bytes=1.5 * 2**30)
    assert len(oracle.tried) <= 6 and sum(t.repeat for t in result.trials) == 1
    assert result.batch_size is not None and result.spread_bytes is not None


def test_largest_fitting_without_headroom_extrapolates_the_measured_model():
    oracle = linear(1000, 10)
    result = search(oracle, min_batch=1, max_batch=10_000, budget_bytes=1800)
    assert result.batch_size == 80
    fits, peak = largest_fitting(result.trials, result.fit, 2000, result.spread_bytes,
                                 10_000)
    assert fits == 100 and peak == 2000  # never measured: the model's prediction
