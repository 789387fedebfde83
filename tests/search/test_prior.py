import functools
import re
from types import SimpleNamespace

import optuna
import pytest
import torch

from autobatch.config import SearchBounds
from autobatch.events import TuneEvent
from autobatch.hyperparams import Hyperparams
from autobatch.measure import LRRange, profile
from autobatch.search import prior
from autobatch.search.prior import (
    FALLBACK_SPAN,
    PRIOR_WIDEN,
    Prior,
    cached_profile,
    measure_prior,
)
from autobatch.search.seeds import seed_trials
from autobatch.search.space import SearchSpace, powers_of_two
from autobatch.workloads import Workload
from tests.conftest import tiny_workload
from tests.doubles import FakeClock, jumping_linear_factory, timed_linear_factory


def stub_prior(space: SearchSpace, lr_range=None, lr_doubt=None) -> SimpleNamespace:
    stub = SimpleNamespace(space=space, lr_range=lr_range, lr_doubt=lr_doubt)
    stub.seed_lr0 = lambda: Prior.seed_lr0(stub)
    return stub


def test_seeds_cover_the_neighbour_batches_and_two_momenta_at_one_effective_lr():
    space = SearchSpace(batch_sizes=(16, 32, 64, 128, 256), anchor_batch=64,
                        lr_range=(0.05, 3.0))
    seeds = seed_trials(stub_prior(space))
    configs = [space.suggest(optuna.trial.FixedTrial(params)) for params in seeds]
    first, second = configs[:2]
    assert first.batch_size == second.batch_size == 64
    assert (first.momentum, second.momentum) == pytest.approx((0.9, 0.95))
    assert first.lr / (1 - first.momentum) == pytest.approx(second.lr / (1 - second.momentum))
    assert {c.batch_size for c in configs} == {32, 64, 128, 256}
    assert len({(c.batch_size, c.lr, c.momentum) for c in configs}) == len(configs)


def measured(bounds: SearchBounds, events: list) -> Prior:
    return measure_prior(tiny_workload(), bounds, torch.device("cpu"), events.append,
                         headroom=0.1, memory_limit=None, use_cache=False, seed=0)


def test_measure_prior_bounds_the_space_by_what_fits_and_the_lr_range_test():
    events: list[TuneEvent] = []
    prior = measured(SearchBounds(max_batch=128, optimizer="adam"), events)
    # (a real profile on a shared machine may fail its bar twice: a warning between)
    stages = [e for e in events if e.kind == "stage" and e.name != "warning"]
    assert [e.name for e in stages] == ["probe", "probe", "profile", "profile", "lr_range",
                                        "lr_range"]
    # Between a long stage's start and end lines, its progress: each measurement of the
    # profile (batch N: measurement i of n), the noise scale, the sweep every 20 steps.
    steps = [(e.name, e.message) for e in events if e.kind == "progress"]
    probed = [m for name, m in steps if name == "probe"]
    assert re.fullmatch(r"batch 1: fit, peak \d+\.\d\d GiB \(1 of <=6\)", probed[0]), probed
    assert re.match(r"batch 128( again)?: fit", probed[-1]) and len(probed) <= 6, probed
    profiled = [m for name, m in steps if name == "profile"]
    assert re.fullmatch(r"batch \d+: measurement 1 of \d+", profiled[0]), profiled
    n = int(profiled[0].rsplit(" ", 1)[1])
    assert len(profiled) >= n and profiled[n - 1].endswith(f"measurement {n} of {n}")
    noise = [m for m in profiled if m.startswith("gradient noise scale")]
    last = max(i for i, m in enumerate(noise) if " draws at batch " in m)  # (after a retake)
    assert noise[last].startswith("gradient noise scale: 64 draws at batch"), noise
    assert noise[last + 1:] == [f"gradient noise scale: draw {d} of 64" for d in (16, 32, 48, 64)]
    swept = [m for name, m in steps if name == "lr_range"]
    assert swept[:2] == ["step 0 of 100, LR 1e-05", "step 20 of 100, LR 0.000163"], swept
    assert prior.probe.max_batch_size == 128  # the tiny model fits any batch up to the bound
    space = prior.space
    assert set(space.batch_sizes) <= set(powers_of_two(1, 128)) and space.anchor_batch in \
        space.batch_sizes
    assert prior.lr_range is not None and prior.lr_range.batch_size == space.anchor_batch
    # the sweep's range is the middle of what the study searches
    assert space.lr_range == pytest.approx((prior.lr_range.low / PRIOR_WIDEN,
                                            prior.lr_range.high * PRIOR_WIDEN))
    assert space.optimizer == "adam" and prior.bucket_base > 0
    # what the study stores, it reads back the same
    assert Prior.from_dict(prior.to_dict()).space == space


def test_measure_prior_skips_the_lr_range_test_for_a_fixed_lr_and_batch():
    events: list[TuneEvent] = []
    prior = measured(SearchBounds(batch_size=32, lr=0.05, momentum=0.8), events)
    assert "lr_range" not in {e.name for e in events} and prior.lr_range is None
    assert prior.space.batch_sizes == (32,) and prior.space.anchor_batch == 32
    assert (prior.space.lr_fixed, prior.space.momentum_fixed) == (0.05, 0.8)
    assert prior.probe.max_batch_size == 32  # probed at the fixed batch only


def test_cached_profile_profiles_once_per_workload_device_and_batch_range(tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(tmp_path))
    calls = []
    clock = FakeClock()  # exact step times: the fit always passes its bar

    def counted(*args, **kwargs):
        calls.append(kwargs["max_batch"])
        return profile(*args, **kwargs, clock=clock)

    monkeypatch.setattr(prior, "profile", counted)
    wl, cpu = tiny_workload(model_factory=timed_linear_factory(clock)), torch.device("cpu")
    first, doubt = cached_profile(wl, cpu, 32, 0, use_cache=True)
    assert doubt is None and cached_profile(wl, cpu, 32, 0, use_cache=True) == (first, None)
    assert calls == [32]
    cached_profile(wl, cpu, 16, 0, use_cache=True)  # another batch range: another profile
    assert calls == [32, 16] and len(list(tmp_path.glob("profile-*.json"))) == 2
    cached_profile(wl, cpu, 32, 0, use_cache=False)
    assert calls == [32, 16, 32]


def jumping_prior(monkeypatch, jumps: list) -> Workload:
    """tiny_workload on a fake device whose i-th profile's step cost jumps 10x after
    jumps[i] training passes (85: in the middle of the default sizes up to 128)."""
    clock = FakeClock()
    monkeypatch.setattr(prior, "profile", functools.partial(profile, clock=clock,
                                                            noise=False))
    return tiny_workload(n_train=512, model_factory=jumping_linear_factory(clock, jumps))


def test_a_profile_failing_its_bar_twice_is_not_cached_and_warns(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(tmp_path))
    wl = jumping_prior(monkeypatch, [85] * 50)  # the probe's models jump too: harmless
    events: list[TuneEvent] = []
    measure_prior(wl, SearchBounds(max_batch=128, lr=0.1, momentum=0.9),
                  torch.device("cpu"), events.append, headroom=0.1, memory_limit=None,
                  use_cache=True, seed=0)
    warnings = [e.message for e in events if e.name == "warning"]
    assert len(warnings) == 1 and warnings[0].startswith(
        "the throughput profile failed its quality bar twice (the machine may be busy): "
        "step-time fit error 35% (the bar is 15%); samples/s 3,846 / 7,407 / 4,926 / "
        "2,424 / 3,902 at batch 8 / 16 / 32 / 64 / 128")
    assert not list(tmp_path.glob("profile-*.json"))


def test_a_retake_that_passes_is_cached_without_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(tmp_path))
    wl = jumping_prior(monkeypatch, [85, None])
    result, doubt = cached_profile(wl, torch.device("cpu"), 128, 0, use_cache=True)
    assert doubt is None and result.fit_error < 1e-9
    assert len(list(tmp_path.glob("profile-*.json"))) == 1


def test_a_saved_profile_replaces_profiling_and_is_held_to_the_bar(monkeypatch):
    from tests.measure.test_trust import MID, profiler

    monkeypatch.setattr(prior, "profile", lambda *a, **k: pytest.fail("profiled"))
    for saved, warned in ((profiler([None])(), False), (profiler([MID])(), True)):
        events: list[TuneEvent] = []
        result = measure_prior(tiny_workload(), SearchBounds(max_batch=128, lr=0.1,
                                                             momentum=0.9),
                               torch.device("cpu"), events.append, headroom=0.1,
                               memory_limit=None, use_cache=False, seed=0,
                               saved_profile=saved)
        assert result.profile is saved
        stages = [e.message for e in events if e.kind == "stage"]
        assert stages[2] == "the saved profile of tiny on cpu (batch up to 512)"
        warnings = [e.message for e in events if e.name == "warning"]
        assert [w.startswith("step-time fit error 35%") for w in warnings] == \
            ([True] if warned else [])


def flat_sweep(*args, batch_size: int, **kwargs) -> LRRange:
    """An LR range test that saw no training: the loss sat near chance to the stop."""
    losses = (1.1, 1.1, 1.09, 1.1, 1.1, 1.1, 1.1)
    return LRRange(low=5.1e-7, high=7.6e-5, lr_at_min_loss=1.5e-5, batch_size=batch_size,
                   momentum=0.9, lrs=tuple(1e-5 * 1.2**i for i in range(len(losses))),
                   losses=losses, seconds=0.1)


def test_a_failed_lr_range_test_gives_way_to_a_wide_range_around_the_reference_recipe(
        monkeypatch):
    monkeypatch.setattr(prior, "lr_range_test", flat_sweep)
    reference = Hyperparams(batch_size=64, lr=0.3, momentum=0.9)
    events: list[TuneEvent] = []
    result = measure_prior(tiny_workload(reference=reference), SearchBounds(max_batch=64),
                           torch.device("cpu"), events.append, headroom=0.1,
                           memory_limit=None, use_cache=False, seed=0)
    space = result.space
    assert space.anchor_batch == 64 and result.lr_doubt is not None
    assert space.lr_range == pytest.approx((0.3 * FALLBACK_SPAN[0], 0.3 * FALLBACK_SPAN[1]))
    assert any(e.name == "warning" and "wide LR range" in e.message for e in events)
    configs = [space.suggest(optuna.trial.FixedTrial(p))
               for p in seed_trials(result, reference)]
    # the reference recipe is tried first, and the others start in the middle of the range
    assert (configs[0].batch_size, configs[0].lr, configs[0].momentum) == \
        pytest.approx((64, 0.3, 0.9))
    assert configs[1].lr == pytest.approx(0.3 * (FALLBACK_SPAN[0] * FALLBACK_SPAN[1]) ** 0.5)
    assert Prior.from_dict(result.to_dict()).lr_doubt == result.lr_doubt


def test_the_reference_recipe_is_seeded_at_the_nearest_batch_by_the_sqrt_rule():
    space = SearchSpace(batch_sizes=(32, 64, 128), anchor_batch=64, lr_range=(1e-3, 10.0))
    reference = Hyperparams(batch_size=512, lr=0.4, momentum=0.95)
    first = space.suggest(optuna.trial.FixedTrial(seed_trials(stub_prior(space), reference)[0]))
    assert (first.batch_size, first.momentum) == pytest.approx((128, 0.95))
    assert first.lr == pytest.approx(0.4 * (128 / 512) ** 0.5)


def test_a_stage_budget_spent_cuts_the_profile_skips_the_sweep_and_widens_the_lr_range():
    events: list[TuneEvent] = []
    found = measure_prior(tiny_workload(), SearchBounds(max_batch=128), torch.device("cpu"),
                          events.append, headroom=0.1, memory_limit=None, use_cache=False,
                          seed=0, budget_s=1e-9)
    warnings = [e.message for e in events if e.name == "warning"]
    assert any(m.startswith("the profile was cut short (stage budget: 2 of ") for m in warnings)
    assert any(m.startswith("no time was left in the stage budget for the LR range test: "
                            "searching the wide LR range") for m in warnings), warnings
    assert found.profile.cut and found.profile.noise is None
    assert found.lr_range is None and found.space.lr_range == prior.FALLBACK_LR_RANGE
    assert not any(e.name == "lr_range" for e in events)  # the sweep never started
