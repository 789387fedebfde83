from types import SimpleNamespace

import optuna
import pytest
import torch

from autobatch.config import SearchBounds
from autobatch.events import TuneEvent
from autobatch.measure import profile
from autobatch.search import prior
from autobatch.search.prior import Prior, cached_profile, measure_prior, seed_trials
from autobatch.search.space import SearchSpace, powers_of_two
from tests.conftest import tiny_workload


def test_seeds_cover_the_neighbour_batches_and_two_momenta_at_one_effective_lr():
    space = SearchSpace(batch_sizes=(16, 32, 64, 128, 256), anchor_batch=64,
                        lr_range=(0.05, 3.0))
    seeds = seed_trials(SimpleNamespace(space=space, lr_range=None))
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
    assert [e.name for e in events] == ["probe", "probe", "profile", "profile", "lr_range",
                                        "lr_range"]
    assert prior.probe.max_batch_size == 128  # the tiny model fits any batch up to the bound
    space = prior.space
    assert set(space.batch_sizes) <= set(powers_of_two(1, 128)) and space.anchor_batch in \
        space.batch_sizes
    assert prior.lr_range is not None and prior.lr_range.batch_size == space.anchor_batch
    assert space.lr_range == (prior.lr_range.low, prior.lr_range.high)
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

    def counted(*args, **kwargs):
        calls.append(kwargs["max_batch"])
        return profile(*args, **kwargs)

    monkeypatch.setattr(prior, "profile", counted)
    wl, cpu = tiny_workload(), torch.device("cpu")
    first = cached_profile(wl, cpu, 32, 0, use_cache=True)
    assert cached_profile(wl, cpu, 32, 0, use_cache=True) == first
    assert calls == [32]
    cached_profile(wl, cpu, 16, 0, use_cache=True)  # another batch range: another profile
    assert calls == [32, 16] and len(list(tmp_path.glob("profile-*.json"))) == 2
    cached_profile(wl, cpu, 32, 0, use_cache=False)
    assert calls == [32, 16, 32]
