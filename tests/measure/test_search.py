"""The batch-size search, against fake memory oracles: exact batches tried."""

from __future__ import annotations

import math

import pytest

from autobatch.measure.batch_search import Measurement, fit_line, search


def linear(fixed: float, per_sample: float, *, oom_from: int | None = None,
           quadratic: float = 0.0):
    """An oracle whose peak is fixed + per_sample*b (+ quadratic*b^2); OOM from `oom_from`."""
    tried: list[int] = []

    def measure(b: int) -> Measurement:
        tried.append(b)
        if oom_from is not None and b >= oom_from:
            return Measurement(oom=True)
        return Measurement(oom=False, peak_bytes=round(fixed + per_sample * b
                                                        + quadratic * b * b))

    measure.tried = tried  # type: ignore[attr-defined]
    return measure


def test_search_linear_memory_jumps_to_the_predicted_maximum_and_verifies_it():
    oracle = linear(1000, 10)
    result = search(oracle, min_batch=1, max_batch=10_000, budget_bytes=2000)
    assert [t.batch_size for t in result.trials] == [1, 8, 100]
    assert result.batch_size == 100 and result.limited_by == "memory"
    assert result.fit.fixed_bytes == pytest.approx(1000)
    assert result.fit.bytes_per_sample == pytest.approx(10)
    assert result.fit.r2 == pytest.approx(1.0)


def test_search_corrects_a_wrong_prediction_by_interpolating_measured_peaks():
    # Convex memory: the line from small batches overshoots; the over-budget peak
    # brackets the answer and the secant closes in without bisection.
    oracle = linear(1000, 10, quadratic=0.05)  # true maximum: 73
    result = search(oracle, min_batch=1, max_batch=10_000, budget_bytes=2000)
    assert [(t.batch_size, t.outcome) for t in result.trials] == [
        (1, "fit"), (8, "fit"), (95, "over_budget"), (68, "fit"), (72, "fit")]
    assert result.batch_size == 72  # within the 2% tolerance of 73


def test_search_bisects_only_where_an_oom_proved_the_line_wrong():
    # The line says 100 fits, but everything from 60 runs out of memory with no peak.
    oracle = linear(1000, 10, oom_from=60)
    result = search(oracle, min_batch=1, max_batch=10_000, budget_bytes=2000)
    assert oracle.tried == [1, 8, 100, 54, 77, 65, 59, 62]
    assert result.batch_size == 59
    assert all(t.outcome == "oom" for t in result.trials if t.batch_size >= 60)


def test_search_steps_up_geometrically_before_extrapolating_far():
    oracle = linear(1000, 1)  # the line predicts 10,000: too far from 8 to trust
    result = search(oracle, min_batch=1, max_batch=100_000, budget_bytes=11_000)
    assert oracle.tried == [1, 8, 64, 512, 10_000]
    assert result.batch_size == 10_000


def test_search_goes_straight_to_max_batch_when_memory_is_not_the_limit():
    oracle = linear(1000, 1)
    result = search(oracle, min_batch=1, max_batch=512, budget_bytes=1e9)
    assert oracle.tried == [1, 8, 512]
    assert result.batch_size == 512 and result.limited_by == "max_batch"


def test_search_starts_at_min_batch_and_never_leaves_the_bounds():
    oracle = linear(1000, 10)
    result = search(oracle, min_batch=16, max_batch=60, budget_bytes=2000)
    assert oracle.tried == [16, 60]
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
    assert oracle.tried == [1, 8, 4096] and result.batch_size == 4096


@pytest.mark.parametrize("max_attempts", [1, 2, 3, 5])
def test_search_attempts_are_bounded(max_attempts):
    oracle = linear(1000, 10, oom_from=60)
    result = search(oracle, min_batch=1, max_batch=10_000, budget_bytes=2000,
                    max_attempts=max_attempts)
    assert len(oracle.tried) == max_attempts
    fitted = [t.batch_size for t in result.trials if t.outcome == "fit"]
    assert result.batch_size == max(fitted)


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
