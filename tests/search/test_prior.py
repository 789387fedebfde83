from types import SimpleNamespace

import optuna
import pytest

from autobatch.search.prior import seed_trials
from autobatch.search.space import SearchSpace


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
