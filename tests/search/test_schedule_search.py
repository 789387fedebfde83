"""Schedules in the search: the shapes, the batch-coupled warmup, the horizon, the
seeded variants, and the contract that refuses a resume with other schedule options."""

from types import SimpleNamespace

import optuna
import pytest
import torch

from autobatch import ConfigError, TuneConfig
from autobatch.config import SearchBounds
from autobatch.prepare import prepare
from autobatch.schedule import Schedule
from autobatch.search.prior import HORIZON_SPAN, measure_prior
from autobatch.search.seeds import seed_trials
from autobatch.search.settings import contract
from autobatch.search.space import SearchSpace
from autobatch.search.study import check_contract
from autobatch.storage import open_storage
from tests.conftest import tiny_workload

ALL = ("constant", "cosine", "linear", "wsd")


def space(**overrides) -> SearchSpace:
    fields = dict(batch_sizes=(32, 64, 128, 256), anchor_batch=64, lr_range=(0.01, 1.0),
                  schedules=ALL, horizon_range=(4.0, 64.0), warmup_max=2.0)
    return SearchSpace(**{**fields, **overrides})


def test_the_warmup_grows_with_the_batch_above_the_anchor_and_stays_below_the_horizon():
    s = space()
    assert s.schedule_of("cosine", 64, 1.0, 16.0) == Schedule(
        name="cosine", warmup="1epochs", horizon="16epochs")
    assert s.schedule_of("cosine", 256, 1.0, 16.0).warmup == "4epochs"  # 4x the batch
    assert s.schedule_of("cosine", 32, 1.0, 16.0).warmup == "1epochs"  # never shorter
    assert s.schedule_of("linear", 256, 2.0, 6.0).warmup == "3epochs"  # half the horizon
    assert s.schedule_of("constant", 128, 0.5, 16.0) == Schedule(warmup="1epochs")
    assert s.schedule_of("wsd", 64, 0.0, 16.0).warmup == "0steps"


def test_enqueued_schedule_params_reproduce_the_schedule_and_the_peak_lr_is_coupled():
    s = space()
    params = s.raw_params(batch=128, lr0=0.1, scaling=1.0, schedule="wsd", warmup0=0.5,
                          horizon=20.0)
    hp = s.suggest(optuna.trial.FixedTrial(params))
    assert hp.schedule == Schedule(name="wsd", warmup="1epochs", horizon="20epochs")
    assert hp.lr == pytest.approx(0.2)  # the coupling applies to the peak
    assert set(params) == {"batch_size", "one_minus_momentum", "lr0", "lr_scaling",
                           "schedule", "warmup0", "horizon_epochs"}
    # a space of one shape searches neither the shape nor its warmup
    fixed = space(schedules=("cosine",), warmup_max=0.0)
    assert set(fixed.raw_params(batch=64, lr0=0.1, scaling=1.0)) == {
        "batch_size", "one_minus_momentum", "lr0", "lr_scaling", "horizon_epochs"}
    assert fixed.suggest(optuna.trial.FixedTrial(fixed.raw_params(
        batch=64, lr0=0.1, scaling=1.0))).schedule.horizon == "16epochs"  # the middle


def test_a_space_of_decaying_shapes_needs_a_horizon_range():
    with pytest.raises(ConfigError, match="decaying schedules need a horizon range"):
        space(horizon_range=None)
    with pytest.raises(ConfigError, match="schedules must be among"):
        space(schedules=("step",))


def test_seeds_include_each_decaying_shape_at_the_predicted_best_batch():
    s = space()
    configs = [s.suggest(optuna.trial.FixedTrial(p))
               for p in seed_trials(SimpleNamespace(space=s, seed_lr0=lambda: 0.1))]
    assert configs[0].schedule == Schedule()  # the first seed is the constant classic
    at_anchor = {c.schedule.name for c in configs if c.batch_size == 64}
    assert at_anchor == set(ALL)
    cosine = next(c for c in configs if c.schedule.name == "cosine")
    assert cosine.schedule == Schedule(name="cosine", warmup="0.4epochs", horizon="16epochs")


def test_the_prior_bounds_horizons_by_what_fits_in_a_trial():
    def measured(schedule: str):
        return measure_prior(tiny_workload(), SearchBounds(batch_size=32, lr=0.1,
                                                           schedule=schedule),
                             torch.device("cpu"), lambda e: None, headroom=0.1,
                             memory_limit=None, use_cache=False, seed=0, trial_budget_s=10)
    auto = measured("auto").space
    low, high = auto.horizon_range
    assert auto.schedules == ALL and auto.warmup_max == pytest.approx((low * high) ** 0.5 / 4)
    assert high == pytest.approx(HORIZON_SPAN * low) and low > 1
    constant = measured("constant").space
    assert (constant.schedules, constant.horizon_range, constant.warmup_max) == (
        ("constant",), None, 0.0)


def test_resuming_with_other_schedule_options_is_refused(tmp_path):
    wl = tiny_workload()
    study = optuna.create_study()
    check_contract(study, contract(wl, target=0.9, bounds=SearchBounds(), time_mode="measured"))
    with pytest.raises(ConfigError, match=r"schedule: 'auto' -> 'cosine'.*--new-study"):
        check_contract(study, contract(wl, target=0.9, bounds=SearchBounds(schedule="cosine"),
                                       time_mode="measured"))
    storage = f"sqlite:///{tmp_path / 's.db'}"
    config = dict(target=0.9, storage=storage, batch_size=32, lr=0.1, study_name="s")
    prepare(wl, TuneConfig(**config, schedule="wsd"), torch.device("cpu"), lambda e: None)
    with pytest.raises(ConfigError, match=r"schedule: 'wsd' -> 'linear'"):
        prepare(wl, TuneConfig(**config, schedule="linear"), torch.device("cpu"),
                lambda e: None)
    assert len(optuna.get_all_study_names(open_storage(storage))) == 1


def test_unknown_tune_schedule_is_refused_by_name():
    with pytest.raises(ConfigError, match="schedule must be one of auto, constant, cosine"):
        TuneConfig(target=0.9, schedule="step")
