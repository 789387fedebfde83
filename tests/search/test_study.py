"""Study bookkeeping: convergence, the contract, zombie trials."""


import optuna
import pytest
import torch
from optuna.trial import TrialState

import autobatch.keys as keys
from autobatch import ConfigError
from autobatch.config import SearchBounds
from autobatch.search.settings import contract
from autobatch.search.study import check_contract, converged, fail_running, summarize
from tests.conftest import tiny_workload

CPU = torch.device("cpu")


@pytest.mark.parametrize(("values", "patience", "expected"), [
    ((None, None, None, None), 3, False),  # nothing reached the target yet: keep looking
    ((5.0, None, None), 3, False),
    ((5.0, None, None, None), 3, True),
    ((5.0, None, 4.0, None, None), 3, False),  # 20% better: the count starts again
    ((5.0, None, 4.9, None, None), 3, True),  # 2% better: within the noise, no reset
    ((5.0, 4.9, 4.8, 4.7), 3, True),  # creeping by 2% a trial never resets it either
])
def test_converged_counts_trials_since_the_last_real_improvement(values, patience, expected):
    assert converged(finished(*values), patience) is expected


def test_check_contract_lists_the_differences():
    study = optuna.create_study()
    check_contract(study, {"workload": "a", "target": 0.9})
    check_contract(study, {"workload": "a", "target": 0.9})  # same: fine
    with pytest.raises(ConfigError, match=r"target: 0.9 -> 0.95.*--new-study"):
        check_contract(study, {"workload": "a", "target": 0.95})


def test_a_study_whose_intermediate_values_are_errors_refuses_to_resume():
    # before censored intermediate values its trials reported validation errors: the
    # pruner would set them beside seconds
    now = contract(tiny_workload(), target=0.9, bounds=SearchBounds(), time_mode="measured")
    study = optuna.create_study()
    study.set_user_attr(keys.CONTRACT, {k: v for k, v in now.items()
                                        if k != "intermediate_values"})
    with pytest.raises(ConfigError, match=r"intermediate_values: None -> 'censored_s'.*"
                                          r"--new-study"):
        check_contract(study, now)


def test_fail_running_marks_running_trials_failed(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(storage=storage, study_name="z")
    study.ask()  # a trial left RUNNING, as by a killed process
    study.tell(study.ask(), 1.0)
    assert fail_running(optuna.load_study(study_name="z", storage=storage), "zombie") == 1
    trials = optuna.load_study(study_name="z", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[0].user_attrs["fail_reason"] == "zombie"
    assert summarize(optuna.load_study(study_name="z", storage=storage)) == {
        "fail (zombie)": 1, "complete (target not reached)": 1}


def finished(*values: float | None) -> list[optuna.trial.FrozenTrial]:
    """Trials in completion order: a number is a time to target, None a pruned trial."""
    study = optuna.create_study()
    for value in values:
        if value is None:
            study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED))
        else:
            study.add_trial(optuna.trial.create_trial(value=value,
                                                      user_attrs={"target_reached": True}))
    return study.get_trials()
