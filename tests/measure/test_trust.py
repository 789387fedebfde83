"""The profile's quality bar: a load that jumps mid-profile fails it, a retake that
passes replaces it, and two failures give a warning with the numbers."""

import dataclasses

from autobatch.measure import profile
from autobatch.measure.trust import FIT_ERROR_LIMIT, profile_doubt, retaken
from tests.conftest import tiny_workload
from tests.doubles import FakeClock, jumping_linear_factory

SIZES = [8, 16, 32, 64, 128]
MID = 85  # training passes: the jump lands in the third of five repeats


def profiler(jumps: list[int | None]):
    """A profile measure() on a fake device whose i-th profile jumps after jumps[i]."""
    clock = FakeClock()
    workload = tiny_workload(n_train=512, model_factory=jumping_linear_factory(clock, jumps))
    return lambda: profile(workload, device="cpu", batch_sizes=SIZES, noise=False,
                           clock=clock)


def test_a_clean_profile_passes_the_bar():
    result = profiler([None])()
    assert result.fit_error < 1e-9 and profile_doubt(result) is None


def test_a_step_cost_that_jumps_mid_profile_fails_the_bar_with_its_numbers():
    result = profiler([MID])()
    assert result.fit_error > FIT_ERROR_LIMIT
    assert profile_doubt(result) == (
        f"step-time fit error {result.fit_error:.0%} (the bar is 15%); samples/s "
        "3,846 / 7,407 / 4,926 / 2,424 / 3,902 at batch 8 / 16 / 32 / 64 / 128")


def test_samples_per_s_falling_by_more_than_half_fails_the_bar_even_on_a_good_fit():
    clean = profiler([None])()
    rows = list(clean.rows)
    rows[3] = dataclasses.replace(rows[3], samples_per_s=rows[2].samples_per_s * 0.4)
    doubt = profile_doubt(dataclasses.replace(clean, rows=tuple(rows)))
    assert doubt.startswith("samples/s falls from 13,793 at batch 32 to 5,517 at batch 64;")


def test_a_failed_profile_is_retaken_once_and_a_passing_retake_is_used_silently():
    measure = profiler([MID, None])
    result, doubt = retaken(measure)
    assert doubt is None and result.fit_error < 1e-9


def test_two_failures_keep_the_better_profile_and_warn_naming_both():
    result, doubt = retaken(profiler([MID, 90]))
    first, second = profiler([MID])(), profiler([90])()
    assert result.fit_error == min(first.fit_error, second.fit_error)
    assert doubt.startswith("the throughput profile failed its quality bar twice (the "
                            "machine may be busy): step-time fit error ")
    assert f"first try: step-time fit error {first.fit_error:.0%}" in doubt
    assert doubt.endswith("Not cached; B_sat and the predicted best batch may be wrong")
