"""Learning-curve extrapolation on synthetic curves whose answer is known."""

import math
import random

import pytest

from autobatch.search.extrapolate import CurveFit, fit_curve, predict_time_to_target

TRUE = CurveFit(m=0.95, a=0.2, c=0.8, sse=0.0)  # reaches 0.9 at (0.2 / 0.05)^(1/0.8) s


def geometric(start: float, stop: float, n: int) -> list[float]:
    """Evaluation times as the training loop places them: geometric in training time."""
    return [start * (stop / start) ** (i / (n - 1)) for i in range(n)]


def test_a_noise_free_curve_is_recovered_and_extrapolated_exactly():
    times = geometric(0.2, 2.0, 12)
    fit = fit_curve(times, [TRUE.metric_at(t) for t in times])
    assert (fit.m, fit.a, fit.c) == pytest.approx((0.95, 0.2, 0.8), rel=1e-4)
    truth = (0.2 / 0.05) ** (1 / 0.8)  # 5.66 s: well beyond the 2 s observed
    assert fit.time_to(0.9) == pytest.approx(truth, rel=1e-3)
    assert TRUE.time_to(0.96) == math.inf and TRUE.time_to(0.5) == pytest.approx(
        (0.2 / 0.45) ** (1 / 0.8))


def test_a_noisy_half_curve_predicts_within_its_interval():
    truth = TRUE.time_to(0.9)
    rng = random.Random(1)
    times = geometric(0.2, truth / 2, 15)
    metrics = [TRUE.metric_at(t) + rng.gauss(0, 0.003) for t in times]
    found = predict_time_to_target(times, metrics, 0.9, seed=0)
    assert found.low <= truth <= found.high
    assert found.seconds == pytest.approx(truth, rel=0.25)
    assert found.reachable > 0.9
    # the same inputs and seed give the same answer
    assert predict_time_to_target(times, metrics, 0.9, seed=0) == found


def test_a_curve_whose_plateau_is_below_the_target_never_reaches_it():
    low = CurveFit(m=0.85, a=0.2, c=1.0, sse=0.0)
    rng = random.Random(2)
    times = geometric(0.2, 5.0, 15)
    metrics = [low.metric_at(t) + rng.gauss(0, 0.002) for t in times]
    found = predict_time_to_target(times, metrics, 0.9, seed=0)
    assert found.seconds == math.inf and found.high is None
    assert found.reachable < 0.1


def test_a_metric_cannot_tend_above_one_and_short_curves_are_not_fitted():
    times = geometric(0.1, 1.0, 8)
    fit = fit_curve(times, [min(1.0, 1.3 - 0.3 * t ** -0.5) for t in times])
    assert fit.m <= 1.0
    assert fit_curve([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]) is None
    assert predict_time_to_target([0.0, 0.1, 0.2, 0.3], [0.1, 0.2, 0.3, 0.4], 0.9) is None
