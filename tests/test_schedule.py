"""The LR schedules: exact multipliers at chosen steps, spans resolved to steps, and the
bad inputs refused by name (no training, no torch)."""

import math
import re

import pytest

from autobatch import ConfigError
from autobatch.hyperparams import Hyperparams
from autobatch.schedule import Schedule, parse_share, steps_per_epoch


def resolved(**fields) -> Schedule:
    return Schedule(**fields).resolve(10)


def test_constant_is_one_at_every_step_and_warmup_ramps_linearly_from_near_zero():
    assert [resolved().lr_at(s) for s in (0, 1, 10**6)] == [1.0, 1.0, 1.0]
    warm = resolved(warmup="4steps")
    assert [warm.lr_at(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_decays_from_the_peak_after_warmup_to_zero_at_the_horizon():
    cos = resolved(name="cosine", warmup="10steps", horizon="110steps")
    assert cos.lr_at(0) == 0.1
    assert cos.lr_at(9) == 1.0
    assert cos.lr_at(10) == 1.0  # cos(0)
    assert cos.lr_at(35) == 0.5 * (1 + math.cos(math.pi / 4))
    assert cos.lr_at(60) == 0.5 * (1 + math.cos(math.pi / 2))  # 0.5 up to rounding
    assert cos.lr_at(110) == 0.0
    assert cos.lr_at(500) == 0.0


def test_linear_decays_in_equal_steps():
    lin = resolved(name="linear", horizon="100steps")
    assert [lin.lr_at(s) for s in (0, 25, 50, 75, 100)] == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_wsd_holds_the_peak_then_cools_down_as_one_minus_sqrt():
    wsd = resolved(name="wsd", warmup="10steps", horizon="100steps", cooldown=0.2)
    assert wsd.cooldown_steps == 20
    assert wsd.lr_at(4) == 0.5
    assert [wsd.lr_at(s) for s in (10, 50, 79)] == [1.0, 1.0, 1.0]
    assert [wsd.lr_at(s) for s in (80, 85, 100)] == [1.0, 0.5, 0.0]
    assert wsd.lr_at(96) == 1 - math.sqrt(0.8)


def test_spans_resolve_to_steps_from_epochs_shares_and_the_budget():
    cos = Schedule(name="cosine", warmup="5%", horizon="40epochs").resolve(12)
    assert (cos.warmup_steps, cos.horizon_steps) == (24, 480)
    assert (cos.warmup, cos.horizon) == ("24steps", "480steps")
    by_budget = Schedule(name="linear", warmup="1.5epochs").resolve(10, budget_steps=300)
    assert (by_budget.warmup_steps, by_budget.horizon_steps) == (15, 300)
    assert Schedule(warmup="2epochs").resolve(7).warmup_steps == 14
    assert steps_per_epoch(3200, 256) == 12 and steps_per_epoch(10, 256) == 1


def test_spans_are_kept_in_one_spelling_and_round_trip_through_the_recipe():
    sched = Schedule(name="wsd", warmup="5.0 %", horizon="2000 step", cooldown=0.1)
    assert (sched.warmup, sched.horizon) == ("5%", "2000steps")
    hp = Hyperparams(batch_size=64, lr=0.1, schedule=sched)
    assert Hyperparams.from_dict(hp.to_dict()) == hp
    assert hp.to_dict()["schedule"] == {"name": "wsd", "warmup": "5%", "horizon": "2000steps",
                                        "cooldown": 0.1}
    assert Hyperparams.from_dict({"batch_size": 64, "lr": 0.1}).schedule == Schedule()
    assert parse_share("cooldown", "20%") == 0.2 and parse_share("cooldown", "0.3") == 0.3


@pytest.mark.parametrize(("fields", "message"), [
    ({"name": "step"}, "schedule must be one of constant, cosine, linear, wsd, got 'step'"),
    ({"name": "cosine", "warmup": "200steps", "horizon": "100steps"},
     "warmup 200steps must be shorter than the horizon 100steps"),
    ({"name": "cosine", "warmup": "100%", "horizon": "100steps"}, "warmup 100%"),
    ({"name": "wsd", "cooldown": 0.0}, "cooldown must be in (0, 1), got 0.0"),
    ({"name": "wsd", "cooldown": 1.0}, "cooldown must be in (0, 1), got 1.0"),
    ({"horizon": "10epochs"}, "a constant schedule has no horizon"),
    ({"name": "cosine", "horizon": "30s"}, "horizon '30s' is in seconds"),
    ({"name": "cosine", "horizon": "soon"}, "horizon must look like 200steps, 1epochs"),
    ({"warmup": "1.5steps"}, "warmup steps must be a whole number"),
])
def test_bad_schedules_are_refused_by_name(fields, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        Schedule(**fields)


@pytest.mark.parametrize(("fields", "budget_steps", "message"), [
    ({"name": "cosine", "horizon": "40epochs"}, 100, "horizon 40epochs (400 steps) is longer "
                                                     "than the budget (100 steps)"),
    ({"name": "cosine"}, None, "a cosine schedule needs a horizon"),
    ({"warmup": "5%"}, None, "warmup 5% is a share of the horizon"),
    ({"name": "linear", "warmup": "2epochs", "horizon": "10steps"}, None,
     "warmup 20steps must be shorter than the horizon 10steps"),
    ({"name": "wsd", "warmup": "85steps", "horizon": "100steps"}, None,
     "the wsd cooldown (20 steps) overlaps the warmup"),
])
def test_schedules_that_cannot_resolve_are_refused_by_name(fields, budget_steps, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        Schedule(**fields).resolve(10, budget_steps)


def test_an_unresolved_schedule_has_no_step_counts():
    with pytest.raises(ConfigError, match="not resolved to steps"):
        Schedule(name="cosine", horizon="4epochs").lr_at(0)
