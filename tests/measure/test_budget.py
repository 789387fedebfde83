"""The stages' time budget: the arithmetic exactly, and the profile cut on a fake clock."""

import pytest

from autobatch import profile
from autobatch.measure.budget import (
    MIN_DRAWS,
    MIN_SWEEP_STEPS,
    affordable_batch,
    noise_plan,
    stage_budget,
    sweep_steps,
)
from autobatch.measure.throughput import NOISE_DRAWS, NOISE_WARMUP_STEPS, UNMEASURED
from autobatch.measure.timing import REPEATS
from tests.conftest import tiny_workload
from tests.doubles import ALPHA, BETA, FakeClock, timed_linear_factory


def step(b: int) -> float:
    return ALPHA + BETA * b


def fake_profile(sizes: list[int], budget_s: float | None = None, *, n_train: int = 512,
                 noise: bool = False):
    """A profile of a linear model whose forward pass moves a fake clock by step(b)."""
    clock = FakeClock()
    workload = tiny_workload(n_train=n_train, model_factory=timed_linear_factory(clock))
    return profile(workload, device="cpu", batch_sizes=sizes, noise=noise, clock=clock,
                   budget_s=budget_s)


def test_the_noise_scale_gets_fewer_draws_then_fewer_warmup_steps_or_none():
    plan = dict(b_small=4, b_big=64, warmup_batch=32, warmup_steps=200, draws=64)
    full = 200 * step(32) + 64 * (step(4) + step(64))
    assert noise_plan(step, **plan, left_s=full) == (200, 64)
    # 200 warm-up steps and 16 draws fit, 32 draws do not: halved twice
    assert noise_plan(step, **plan, left_s=200 * step(32) + 20 * (step(4) + step(64))) == (200, 16)
    # not even MIN_DRAWS after the full warm-up: the warm-up shrinks to what is left
    left = 100 * step(32) + MIN_DRAWS * (step(4) + step(64))
    assert noise_plan(step, **plan, left_s=left + 1e-9) == (100, MIN_DRAWS)
    assert noise_plan(step, **plan, left_s=10 * step(32)) is None
    assert noise_plan(step, **plan, left_s=-1.0) is None


def test_the_sweep_gets_what_fits_between_its_minimum_and_its_length():
    assert sweep_steps(0.01, steps=100, left_s=5.0) == 100
    assert sweep_steps(0.01, steps=100, left_s=0.505) == 50
    assert sweep_steps(0.01, steps=100, left_s=0.01 * MIN_SWEEP_STEPS - 1e-6) is None
    assert stage_budget(600) == pytest.approx(60) and stage_budget(None) is None


def test_a_profile_over_its_budget_keeps_two_sizes_and_says_what_it_left_out():
    sizes = [8, 16, 32, 64, 128, 256]

    def measured(budget_s=None):
        return fake_profile(sizes, budget_s)

    whole = measured()
    assert whole.cut is None and {r.repeats for r in whole.rows} == {REPEATS}
    # a third of the time: what fits, ascending, and the cut says what was left out
    third = measured(whole.seconds / 3)
    timed = [r for r in third.rows if r.fits]
    assert timed == list(third.rows[:len(timed)]) and len(timed) >= 2
    fewest = min(r.repeats for r in timed)
    left_out = [f"{len(timed)} of {len(sizes)} batch sizes timed"] if len(timed) < len(sizes) \
        else []
    assert third.cut == f"stage budget: {', '.join(left_out + [f'{fewest} of {REPEATS} repeats'])}"
    assert third.seconds < whole.seconds
    # no time at all: the two smallest sizes, the least a fit needs
    least = measured(1e-9)
    assert [r.batch_size for r in least.rows if r.fits] == [8, 16]
    assert all(r.reason == UNMEASURED for r in least.rows if not r.fits)
    assert least.cut == f"stage budget: 2 of {len(sizes)} batch sizes timed, 1 of {REPEATS} repeats"
    # what was timed is as exact as in a whole profile, so the fit still is
    assert least.alpha == pytest.approx(ALPHA, rel=1e-9)
    assert least.beta == pytest.approx(BETA, rel=1e-9)


def test_a_large_batch_whose_warm_up_would_overrun_the_budget_is_not_started():
    small = fake_profile([8, 16], budget_s=1e-9)  # the two sizes a fit needs, nothing else
    cut = fake_profile([8, 16, 512], budget_s=small.seconds)
    assert [r.batch_size for r in cut.rows if r.fits] == [8, 16]


def test_the_noise_scale_fits_the_profiles_budget_by_its_own_step_fit():
    def measured(budget_s=None):
        return fake_profile([16, 32, 64], budget_s, n_train=256, noise=True)

    whole = measured()
    assert (whole.noise.draws, whole.noise.warmup_steps) == (NOISE_DRAWS, NOISE_WARMUP_STEPS)
    noise_s = whole.noise.seconds
    cut = measured(whole.seconds - noise_s / 2)
    assert cut.noise is not None and cut.noise.draws < NOISE_DRAWS
    assert cut.cut.startswith("stage budget: noise scale from ")
    assert cut.seconds <= whole.seconds - noise_s / 2 + 1e-9  # predicted exactly: it fits
    none = measured(whole.seconds - noise_s)
    assert none.noise is None and none.cut == "stage budget: no noise scale"


def test_the_probe_affords_a_batch_in_proportion_to_its_largest_measured_batch():
    measured = [(1, 0.35), (8, 0.4), (500, 1.25)]  # 2.5 ms a sample at batch 500
    assert affordable_batch(measured, 10.0, 2000) == 2000  # 5 s predicted
    assert affordable_batch(measured, 3.0, 8000) == 1200
    assert affordable_batch(measured, 0.001, 8000) == 0
    assert affordable_batch([(8, 0.4), (1, 0.5)], 2.0, 1000) == 40  # 50 ms a sample
