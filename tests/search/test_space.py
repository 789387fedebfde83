import math

import optuna
import pytest

from autobatch import ConfigError
from autobatch.search.space import (
    SearchSpace,
    batch_candidates,
    nearest_power_of_two,
    powers_of_two,
    predicted_best_batch,
)


def test_powers_of_two_within_bounds():
    assert powers_of_two(3, 40) == [4, 8, 16, 32]
    assert powers_of_two(1, 1) == [1]
    assert powers_of_two(5, 7) == []


def test_nearest_power_of_two_is_nearest_on_a_log_scale():
    assert nearest_power_of_two(190, [64, 128, 256, 512]) == 256  # log2(190) = 7.57
    assert nearest_power_of_two(170, [64, 128, 256, 512]) == 128  # log2(170) = 7.41
    assert nearest_power_of_two(5000, [64, 128]) == 128


def test_predicted_best_batch_is_the_geometric_mean():
    assert predicted_best_batch(320, 230) == pytest.approx(math.sqrt(320 * 230))
    assert predicted_best_batch(0, 100) == pytest.approx(10.0)  # clamped at 1


@pytest.mark.parametrize(("kwargs", "expected"), [
    # B* = 256: from B*/8 = 32 up to 4 B* = 1024 (fits up to 3200)
    (dict(min_batch=1, max_batch=3200, b_star=256, knee=128), [32, 64, 128, 256, 512, 1024]),
    # a knee far above B* extends the range to 2x the knee
    (dict(min_batch=1, max_batch=3200, b_star=64, knee=1024), [8, 16, 32, 64, 128, 256, 512,
                                                               1024, 2048]),
    # memory caps it
    (dict(min_batch=1, max_batch=100, b_star=256, knee=128), [32, 64]),
    # the user's minimum raises the floor
    (dict(min_batch=100, max_batch=3200, b_star=256, knee=128), [128, 256, 512, 1024]),
    # nothing in range: the largest that fits
    (dict(min_batch=1, max_batch=20, b_star=512, knee=1), [20]),
])
def test_batch_candidates(kwargs, expected):
    assert batch_candidates(**kwargs) == expected


def space(**overrides) -> SearchSpace:
    fields = dict(batch_sizes=(32, 64, 128, 256), anchor_batch=64, lr_range=(0.01, 1.0))
    fields.update(overrides)
    return SearchSpace(**fields)


def test_coupled_lr_applies_the_batch_and_momentum_rules():
    s = space()
    assert s.coupled_lr(64, 0.1, 1.0, 0.9) == pytest.approx(0.1)  # at the anchor
    assert s.coupled_lr(256, 0.1, 1.0, 0.9) == pytest.approx(0.4)  # linear rule
    assert s.coupled_lr(256, 0.1, 0.5, 0.9) == pytest.approx(0.2)  # square-root rule
    # same effective step lr / (1 - m): momentum 0.99 needs 10x less LR than 0.9
    assert s.coupled_lr(64, 0.1, 1.0, 0.99) == pytest.approx(0.01)


def ask(space_: SearchSpace, params: dict | None = None):
    study = optuna.create_study()
    if params is not None:
        study.enqueue_trial(params)
    trial = study.ask()
    return space_.suggest(trial), trial


def test_enqueued_raw_params_reproduce_the_configuration():
    s = space()
    params, trial = ask(s, s.raw_params(batch=256, lr0=0.1, scaling=0.5, momentum=0.95))
    assert params.batch_size == 256
    assert params.momentum == pytest.approx(0.95)
    assert params.lr == pytest.approx(0.1 * 2 * 0.5)
    assert set(trial.params) == {"batch_size", "one_minus_momentum", "lr0", "lr_scaling"}


def test_raw_params_clip_into_the_space():
    s = space(lr_range=(0.01, 0.05))
    assert s.raw_params(batch=64, lr0=10.0, scaling=1.0)["lr0"] == 0.05


def test_fixed_values_are_not_searched():
    s = space(batch_sizes=(128,), lr_range=None, lr_fixed=0.3, momentum_fixed=0.8)
    params, trial = ask(s)
    assert (params.batch_size, params.lr, params.momentum) == (128, 0.3, 0.8)
    assert trial.params == {}


def test_momentum_is_searched_as_log_one_minus_momentum():
    s = space(momentum_range=(0.5, 0.99))
    _, trial = ask(s)
    dist = trial.distributions["one_minus_momentum"]
    assert dist.log and dist.low == pytest.approx(0.01) and dist.high == pytest.approx(0.5)


@pytest.mark.parametrize(("overrides", "match"), [
    (dict(batch_sizes=()), "batch sizes must be >= 1"),
    (dict(lr_fixed=0.1), "exactly one of an LR range or a fixed LR"),
    (dict(lr_range=(1.0, 0.1)), "LR range must satisfy 0 < low <= high"),
    (dict(momentum_range=(0.5, 1.0)), "momentum range must satisfy"),
])
def test_search_space_validates(overrides, match):
    with pytest.raises(ConfigError, match=match):
        space(**overrides)


def test_search_space_round_trips_through_a_dict():
    s = space(momentum_fixed=0.9)
    assert SearchSpace.from_dict(s.to_dict()) == s
