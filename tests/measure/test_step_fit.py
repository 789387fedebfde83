"""The profile's arithmetic on plain numbers: sizes to time, the step-time fit, the knee."""

import pytest

from autobatch import ConfigError
from autobatch.measure.step_fit import (
    auto_batch_sizes,
    find_knee,
    fit_step_time,
    noise_batch_sizes,
    spread,
)
from tests.doubles import ALPHA, BETA, step_times


@pytest.mark.parametrize("max_batch, expected", [
    (3200, (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3200)),
    (256, (8, 16, 32, 64, 128, 256)),
    (100, (4, 8, 16, 32, 64, 100)),
    (20, (1, 2, 4, 8, 16, 20)),
    (1, (1,)),
])
def test_auto_batch_sizes_are_powers_of_two_plus_the_maximum(max_batch, expected):
    assert auto_batch_sizes(max_batch) == expected


def test_fit_step_time_recovers_an_exact_line():
    sizes = [8, 16, 32, 64, 128, 256, 512, 1024]
    fit = fit_step_time(sizes, step_times(sizes))
    assert fit.alpha == pytest.approx(ALPHA, rel=1e-9)
    assert fit.beta == pytest.approx(BETA, rel=1e-9)
    assert fit.b_sat == pytest.approx(200.0, rel=1e-9)
    assert fit.error == pytest.approx(0.0, abs=1e-9)


def test_fit_step_time_shrugs_off_one_size_timed_during_a_load_burst():
    sizes = [8, 16, 32, 64, 128, 256, 512, 1024]
    times = step_times(sizes)
    times[5] *= 3  # another process stole the CPU while batch 256 was timed
    fit = fit_step_time(sizes, times)
    plain = fit_step_time(sizes[:5] + sizes[6:], times[:5] + times[6:])
    assert fit.alpha == pytest.approx(ALPHA, rel=0.05)
    assert fit.beta == pytest.approx(BETA, rel=0.05)
    assert plain.alpha == pytest.approx(ALPHA, rel=1e-9)


def test_fit_step_time_flat_times_give_no_saturation_batch():
    fit = fit_step_time([8, 16, 32], [1e-3, 1e-3, 1e-3])
    assert (fit.alpha, fit.beta, fit.b_sat) == (pytest.approx(1e-3), 0.0, None)


def test_fit_step_time_needs_two_distinct_sizes():
    with pytest.raises(ConfigError, match="2 distinct batch sizes"):
        fit_step_time([8, 8], [1e-3, 1e-3])


@pytest.mark.parametrize("gain, knee", [
    # thr(2B)/thr(B) = 2(a + bB)/(a + 2bB) >= 1 + g  <=>  B <= a(1 - g) / (2 g b)
    (0.10, 512),  # B <= 900
    (0.50, 64),  # B <= 100
    (0.90, 8),  # B <= 5.3: not even 8 -> 16 pays, the knee is the smallest batch
])
def test_find_knee_is_the_largest_batch_whose_doubling_still_pays(gain, knee):
    sizes = [8, 16, 32, 64, 128, 256, 512, 1024, 2048]
    throughput = [b / t for b, t in zip(sizes, step_times(sizes))]
    assert find_knee(sizes, throughput, gain) == knee


def test_find_knee_interpolates_an_unmeasured_doubling():
    # Throughput B / (a + bB) at 100 and 400: the doubling of 100 (200) is interpolated.
    sizes = [100, 400]
    throughput = [b / t for b, t in zip(sizes, step_times(sizes))]
    assert find_knee(sizes, throughput, 0.10) == 100
    assert find_knee([100], [1.0], 0.10) is None


@pytest.mark.parametrize("max_batch, n_train, expected", [
    (4096, 100_000, (64, 1024)),  # capped at NOISE_MAX_BIG
    (300, 100_000, (16, 256)),  # the largest power of two that fits
    (4096, 512, (8, 128)),  # at most a quarter of the training set
    (8, 1000, (1, 8)),  # b_small never below 1
])
def test_noise_batch_sizes_are_powers_of_two_16x_apart_within_memory_and_data(
        max_batch, n_train, expected):
    assert noise_batch_sizes(max_batch, n_train) == expected


def test_spread_is_median_min_max():
    assert spread([3.0, 1.0, 2.0, 10.0]) == (2.5, 1.0, 10.0)
