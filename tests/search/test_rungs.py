"""Rungs: the promotion rules on scripted curves, and a study that pauses, promotes and
resumes trials through the objective (a scripted runner: no training, exact times)."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

import autobatch.keys as keys
from autobatch.search.checkpoints import CheckpointStore
from autobatch.search.objective import Objective
from autobatch.search.promotion import MAX_FAILED_CONTINUATIONS, configs
from autobatch.search.rungs import KEPT_PER_RUNG, Config, Rungs, dropped, promotions, score
from autobatch.search.space import SearchSpace
from tests.doubles import ScriptedRunner

TARGET = 0.9
# metric(t) = m - a t^-c per batch: 16 reaches 0.9 at 7.95 s (its evaluation at 8 s), 32
# at 20 s, 64 never (0.85)
CURVES = {16: (0.95, 0.05 * 7.95**0.5, 0.5), 32: (0.95, 0.05 * 20**0.5, 0.5),
          64: (0.85, 0.2, 0.5)}
RUNGS = Rungs((1.0, 3.0, 9.0, 27.0))


def metric(batch: int, seconds: float) -> float:
    m, a, c = CURVES[batch]
    return m - a * seconds**-c


def curve(batch: int, upto: float) -> tuple[tuple[float, float], ...]:
    return tuple((t / 10, metric(batch, t / 10)) for t in range(1, round(upto * 10) + 1))


def paused(number: int, batch: int, rung: int = 0, **kw) -> Config:
    at = RUNGS.seconds[rung]
    return Config(number=number, curve=curve(batch, at), trained_s=at, paused_at=rung,
                  checkpoint=True, **kw)


@pytest.mark.parametrize(("budget", "shortest", "expected"), [
    (270.0, 2.0, (10.0, 30.0, 90.0, 270.0)),
    (27.0, 2.0, None),  # a first rung of 1 s: not worth a checkpoint
    (27.0, 0.0, (1.0, 3.0, 9.0, 27.0)),
])
def test_rungs_for_budget_are_eta_spaced_up_to_the_trial_budget(budget, shortest, expected):
    rungs = Rungs.for_budget(budget, shortest)
    assert (rungs.seconds if rungs else None) == (pytest.approx(expected) if expected else None)


def test_rungs_pause_below_the_top_and_end_at_it():
    assert [RUNGS.pause_at(k) for k in range(4)] == [1.0, 3.0, 9.0, None]


def test_score_ranks_reached_first_then_by_the_extrapolated_time_to_target():
    reached = Config(number=5, curve=curve(32, 20.0), trained_s=20.0, reached_s=20.0)
    fast, slow, never = paused(0, 16), paused(1, 32), paused(2, 64)
    keys_ = [score(c, 1.0, TARGET) for c in (reached, fast, slow, never)]
    assert keys_ == sorted(keys_)
    assert keys_[1][1] == pytest.approx(8.0, rel=0.02)  # the curve's own time to target
    assert keys_[3][1] == math.inf


def test_promotions_take_the_top_third_at_each_rung_highest_rung_first():
    first = [paused(0, 16), paused(1, 32), paused(2, 64)]
    assert promotions(first[:2], RUNGS, TARGET) == []  # two at the rung: floor(2/3) = 0
    assert promotions(first, RUNGS, TARGET) == [0]
    # six at rung 0, three of them also through rung 1: the rung-1 leader goes first
    up = [paused(10, 16, rung=1), paused(11, 32, rung=1), paused(12, 64, rung=1)]
    assert promotions(first + up, RUNGS, TARGET) == [10, 0]


def test_promotions_skip_the_promoted_those_without_checkpoint_and_count_the_reached():
    reached = Config(number=9, curve=curve(16, 8.0), trained_s=8.0, reached_s=8.0)
    rest = [paused(0, 16, promoted=True), paused(1, 32), paused(2, 64)]
    assert promotions(rest, RUNGS, TARGET) == []  # its best is promoted already
    # a reached configuration takes the slot it earned
    assert promotions([reached, paused(1, 32), paused(2, 64)], RUNGS, TARGET) == []
    no_file = [Config(**{**vars(paused(0, 16)), "checkpoint": False}), paused(1, 32),
               paused(2, 64)]
    assert promotions(no_file, RUNGS, TARGET) == []


def test_dropped_keeps_the_best_checkpoints_per_rung():
    waiting = [paused(n, 64) for n in range(KEPT_PER_RUNG + 2)]
    waiting[0] = paused(0, 16)
    gone = dropped(waiting, RUNGS, TARGET)
    assert len(gone) == 2 and 0 not in gone


# ---- the study: pauses, promotions and continuations through the objective -------------

def study_objective(tmp_path, runner: ScriptedRunner, rungs: Rungs | None = RUNGS) -> Objective:
    space = SearchSpace(batch_sizes=(16, 32, 64), anchor_batch=16, lr_fixed=0.1,
                        momentum_fixed=0.9)
    return Objective(runner=runner, space=space, target=TARGET, trial_budget_s=27.0,
                     bucket_base=0.1, rungs=rungs, store=CheckpointStore(tmp_path / "ckpt"))


def run_one(study: optuna.Study, objective: Objective) -> optuna.trial.FrozenTrial:
    objective.before_trial(study)
    study.optimize(objective, n_trials=1)
    return max((t for t in study.trials if t.state.is_finished()),
               key=lambda t: t.datetime_complete)


def test_a_study_pauses_new_trials_and_resumes_the_best_third(tmp_path):
    runner = ScriptedRunner(curve=metric)
    objective = study_objective(tmp_path, runner)
    study = optuna.create_study()
    for batch in (32, 64, 16):
        study.enqueue_trial({"batch_size": batch})
    first = [run_one(study, objective) for _ in range(3)]
    assert [t.state for t in first] == [TrialState.PRUNED] * 3
    assert [t.user_attrs[keys.PAUSED_AT_RUNG] for t in first] == [0, 0, 0]
    assert all(t.user_attrs[keys.PRUNE_REASON] == "paused at 1s" for t in first)
    assert [objective.store.paused(n).exists() for n in range(3)] == [True] * 3

    resumed = run_one(study, objective)  # the batch-16 trial (number 2) is promoted
    assert resumed.params == {"batch_size": 16}
    assert resumed.user_attrs[keys.CONTINUES] == 2 and resumed.user_attrs[keys.RUNG] == 1
    assert resumed.user_attrs[keys.PAUSED_AT_RUNG] == 1
    assert runner.segments[-1].resume == objective.store.paused(2)
    # it continued the curve: its first new evaluation follows the paused one
    assert resumed.user_attrs[keys.CURVE][9:11] == [[1.0, round(metric(16, 1.0), 4)],
                                                    [1.1, round(metric(16, 1.1), 4)]]
    # once its continuation has finished, the paused trial's checkpoint goes
    objective.before_trial(study)
    assert not objective.store.paused(2).exists() and objective.store.paused(3).exists()


def test_a_continued_run_reaches_the_target_in_the_time_of_an_uninterrupted_one(tmp_path):
    objective = study_objective(tmp_path, ScriptedRunner(curve=metric))
    study = optuna.create_study()
    study.enqueue_trial({"batch_size": 16})
    run_one(study, objective)
    for rung in (1, 2):  # promoted by hand: the rules need three configurations
        study.enqueue_trial({"batch_size": 16}, user_attrs={
            keys.CONTINUES: study.trials[-1].number, keys.RUNG: rung})
        run_one(study, objective)
    last = study.trials[-1]
    straight = optuna.create_study()
    straight.enqueue_trial({"batch_size": 16})
    straight.optimize(study_objective(tmp_path, ScriptedRunner(curve=metric), rungs=None),
                      n_trials=1)
    # paused at 1 s and 3 s, then at the target (8 s) before the next rung (9 s)
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 2 + [TrialState.COMPLETE]
    assert last.value == pytest.approx(8.0) == pytest.approx(straight.trials[0].value)
    # the continuation's intermediate values cover the whole run, as the paused ones did
    assert min(last.intermediate_values) == min(study.trials[0].intermediate_values)
    assert last.user_attrs[keys.CURVE] == straight.trials[0].user_attrs[keys.CURVE]


def test_a_torn_checkpoint_restarts_its_configuration_from_scratch(tmp_path):
    runner = ScriptedRunner(curve=metric)
    objective = study_objective(tmp_path, runner)
    study = optuna.create_study()
    study.enqueue_trial({"batch_size": 16})
    run_one(study, objective)
    objective.store.paused(0).write_bytes(b"autobatch-checkpoint 1 999 abc\npartial")
    study.enqueue_trial({"batch_size": 16}, user_attrs={keys.CONTINUES: 0, keys.RUNG: 1})
    restarted = run_one(study, objective)
    assert "is torn" in restarted.user_attrs[keys.RESTARTED]
    assert runner.segments[-1].resume is None
    # from scratch to its rung: the whole 3 s of rung 1 trained again
    assert restarted.user_attrs[keys.CURVE][0][0] == pytest.approx(0.1)
    assert restarted.user_attrs[keys.PAUSED_AT_RUNG] == 1


def test_a_failed_continuation_leaves_its_paused_trial_to_be_promoted_again(tmp_path):
    objective = study_objective(tmp_path, ScriptedRunner(curve=metric))
    study = optuna.create_study()
    for batch in (16, 32, 64):
        study.enqueue_trial({"batch_size": batch})
        run_one(study, objective)
    for attempt in range(MAX_FAILED_CONTINUATIONS):
        objective.before_trial(study)
        waiting = study.get_trials(states=(TrialState.WAITING,))
        assert [t.user_attrs[keys.CONTINUES] for t in waiting] == [0], attempt
        trial = study.ask()  # the continuation, ended by a crash
        study.tell(trial, state=TrialState.FAIL)
    objective.before_trial(study)  # given up on: twice is enough
    assert not study.get_trials(states=(TrialState.WAITING,))
    assert [c.promoted for c in configs(study.trials, objective.store)] == [True, False, False]
