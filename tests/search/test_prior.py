from types import SimpleNamespace

import optuna
import pytest
import torch

from autobatch.measure import profile
from autobatch.search import prior
from autobatch.search.prior import cached_profile, seed_trials
from autobatch.search.space import SearchSpace
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
