"""The trial-runner seam: the objective drives any runner; the subprocess runner trains
in a child process and streams its evaluation points back."""

from __future__ import annotations

import math

import optuna
import pytest
import torch
from optuna.trial import TrialState

import autobatch.keys as keys
from autobatch.config import Budget, RunConfig
from autobatch.frames import RemoteTraceback
from autobatch.search.objective import Objective
from autobatch.search.runners import (
    InProcessRunner,
    SubprocessRunner,
    TrialCrashed,
    UserExit,
    runner_for,
)
from autobatch.search.space import SearchSpace
from autobatch.train import EvalPoint
from autobatch.workloads import load_workload
from tests.conftest import FIXTURES
from tests.doubles import ScriptedRunner

CPU = torch.device("cpu")


def test_a_real_study_runs_its_trials_through_a_fake_runner():
    # batch 64 reaches 0.9 in 0.9 s, batch 16 in 3 s: the study must find 64 and stop
    # the slow trials at the best time, without any training
    runner = ScriptedRunner(rate={16: 0.3, 64: 1.0})
    space = SearchSpace(batch_sizes=(16, 64), anchor_batch=64, lr_fixed=0.1,
                        momentum_fixed=0.9, optimizer="adam")
    objective = Objective(runner=runner, space=space, target=0.9, trial_budget_s=5.0,
                          bucket_base=0.1)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial({"batch_size": 64})
    study.enqueue_trial({"batch_size": 16})
    study.optimize(objective, n_trials=2)
    fast, slow = study.trials
    assert fast.state == TrialState.COMPLETE and fast.value == pytest.approx(0.9)
    assert fast.user_attrs[keys.TARGET_REACHED] and fast.user_attrs["optimizer"] == "adam"
    assert slow.state == TrialState.PRUNED
    assert slow.user_attrs[keys.PRUNE_REASON] == "slower_than_best"
    # the runner got the recipe the space suggested, capped at the best time
    assert [(c.batch_size, c.optimizer) for c in runner.seen] == [(64, "adam"), (16, "adam")]
    assert runner.seen[1].budget.seconds == pytest.approx(0.9)


@pytest.fixture
def fixture_workload():
    def load(name: str):
        return load_workload(f"user_workloads:{name}", app_dir=FIXTURES)
    return load


def config(**overrides) -> RunConfig:
    return RunConfig(**{"batch_size": 16, "lr": 0.05, "target": 1.0,
                        "budget": Budget(steps=40), "seed": 3, **overrides})


def test_the_subprocess_runner_trains_exactly_as_in_process(fixture_workload):
    workload = fixture_workload("good")
    fixed = config(target=None)  # one evaluation, at the end: none placed by the clock
    here = InProcessRunner(workload, CPU).run(fixed, lambda point: False)
    there = SubprocessRunner(workload.spec, CPU).run(fixed, lambda point: False)
    assert there.steps == here.steps == 40
    assert there.final_metric == here.final_metric
    assert there.trace[-1].train_loss == here.trace[-1].train_loss


def test_the_subprocess_runner_streams_points_and_obeys_a_stop(fixture_workload):
    seen: list[EvalPoint] = []

    def third_stops(point: EvalPoint) -> bool:
        seen.append(point)
        return len(seen) == 3

    result = SubprocessRunner(fixture_workload("good").spec, CPU).run(
        config(budget=Budget(steps=10_000)), third_stops)
    assert result.stop_reason == "stopped" and len(result.trace) == 3
    assert list(result.trace) == seen


@pytest.mark.slow
def test_the_childs_errors_arrive_as_the_same_kinds_of_error(fixture_workload):
    with pytest.raises(torch.OutOfMemoryError, match="out of memory"):
        SubprocessRunner(fixture_workload("oom_from_32").spec, CPU).run(
            config(batch_size=32), lambda point: False)
    with pytest.raises(ValueError, match="a bug in the user's forward") as raised:
        SubprocessRunner(fixture_workload("buggy").spec, CPU).run(config(), lambda p: False)
    cause = raised.value.__cause__
    assert isinstance(cause, RemoteTraceback) and "user_workloads.py" in str(cause)
    with pytest.raises(TrialCrashed, match="died without reporting"):
        SubprocessRunner(fixture_workload("dies").spec, CPU).run(config(), lambda p: False)


def subprocess_objective(workload) -> Objective:
    space = SearchSpace(batch_sizes=(16, 32), anchor_batch=16, lr_fixed=0.05)
    return Objective(runner=SubprocessRunner(workload.spec, CPU), space=space, target=0.95,
                     trial_budget_s=2.0, bucket_base=0.01)


def test_a_study_of_subprocess_trials_prunes_the_oom_and_goes_on(fixture_workload):
    study = optuna.create_study()
    study.enqueue_trial({"batch_size": 32})
    study.enqueue_trial({"batch_size": 16})
    study.optimize(subprocess_objective(fixture_workload("oom_from_32")), n_trials=2)
    oom, fine = study.trials
    assert oom.state == TrialState.PRUNED and oom.user_attrs[keys.PRUNE_REASON] == "oom"
    assert fine.state == TrialState.COMPLETE and math.isfinite(fine.value)


def test_a_trial_whose_process_dies_fails_alone_with_reason_crashed(fixture_workload):
    study = optuna.create_study()
    study.optimize(subprocess_objective(fixture_workload("dies")), n_trials=2,
                   catch=(TrialCrashed,))  # as run_trials catches it
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]
    assert all(t.user_attrs[keys.FAIL_REASON] == "crashed" for t in study.trials)


def test_cuda_trials_of_a_loaded_workload_run_in_a_subprocess(fixture_workload, tiny):
    cuda = torch.device("cuda", 0)  # only chosen here, never touched
    assert isinstance(runner_for(fixture_workload("good"), cuda), SubprocessRunner)
    assert isinstance(runner_for(fixture_workload("good"), CPU), InProcessRunner)
    assert isinstance(runner_for(tiny, cuda), InProcessRunner)  # built in code: no spec


@pytest.mark.parametrize("runner", ["in-process", "subprocess"])
@pytest.mark.slow
def test_sys_exit_in_the_users_code_fails_the_trial_and_never_ends_the_study(
        fixture_workload, runner):
    workload = fixture_workload("exits")
    chosen = (InProcessRunner(workload, CPU) if runner == "in-process"
              else SubprocessRunner(workload.spec, CPU))
    with pytest.raises(UserExit, match=r"called sys.exit\(0\) during training"):
        chosen.run(config(), lambda point: False)
    objective = Objective(runner=chosen, space=SearchSpace(batch_sizes=(16,), anchor_batch=16,
                                                           lr_fixed=0.05),
                          target=0.95, trial_budget_s=2.0, bucket_base=0.01)
    study = optuna.create_study()
    study.optimize(objective, n_trials=2, catch=(TrialCrashed,))
    assert [t.user_attrs[keys.FAIL_REASON] for t in study.trials] == ["sys_exit", "sys_exit"]
    assert all(t.state == TrialState.FAIL for t in study.trials)
