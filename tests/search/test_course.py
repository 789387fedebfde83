"""Changing course when the first trials all end one way."""

import optuna
import pytest
from optuna.trial import TrialState

import autobatch.keys as keys
from autobatch.search.course import FIRST_TRIALS, CourseWatch, new_course, one_way
from autobatch.search.space import SearchSpace

SPACE = SearchSpace(batch_sizes=(32, 64), anchor_batch=64, lr_range=(1e-4, 1.0))


def finished(study: optuna.Study, reason: str | None) -> None:
    """A trial that ended pruned for `reason`, or reached the target (None)."""
    attrs = ({keys.PRUNE_REASON: reason} if reason else {keys.TARGET_REACHED: True})
    trial = optuna.trial.create_trial(
        state=TrialState.PRUNED if reason else TrialState.COMPLETE,
        value=None if reason else 1.0, user_attrs=attrs)
    study.add_trial(trial)


def test_the_first_trials_all_ending_on_a_plateau_queue_the_top_of_the_lr_range():
    study = optuna.create_study()
    events = []
    watch = CourseWatch(SPACE, events.append)
    for _ in range(FIRST_TRIALS):
        finished(study, "plateau at 1.1s")
        watch(study, study.trials[-1])
    warnings = [e.message for e in events if e.kind == "stage"]
    assert len(warnings) == 1 and "all ended 'plateau'" in warnings[0]
    queued = [t for t in study.get_trials() if t.state == TrialState.WAITING]
    assert [t.system_attrs["fixed_params"]["lr0"] for t in queued] == pytest.approx([1.0, 1 / 3])


def test_mixed_endings_change_nothing_and_divergence_points_down():
    study = optuna.create_study()
    for reason in ["plateau at 1s"] * (FIRST_TRIALS - 1) + [None]:
        finished(study, reason)
    assert one_way(study.trials) is None
    assert [p["lr0"] for p in new_course(SPACE, "diverged")] == pytest.approx([1e-4, 3e-4])
