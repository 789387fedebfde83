"""Data-parallel trials on real gloo ranks: streamed points and stops, an out-of-memory
error on one rank, a killed rank, and the rank counts refused."""

from __future__ import annotations

import os
import time

import optuna
import psutil
import pytest
import torch
from optuna.trial import TrialState

import autobatch.keys as keys
from autobatch.config import Budget, RunConfig
from autobatch.errors import ConfigError, RankDied, TrialCrashed
from autobatch.search.objective import Objective
from autobatch.search.parallel_runner import ParallelRunner, check_nproc
from autobatch.search.space import SearchSpace
from autobatch.train import EvalPoint
from autobatch.workloads import load_workload
from tests.conftest import FIXTURES

CPU = torch.device("cpu")


def spec(name: str) -> dict:
    return load_workload(f"user_workloads:{name}", app_dir=FIXTURES).spec


def launched_here() -> list[psutil.Process]:
    """The launcher processes (agent and ranks) this process started, wherever they are
    in the process tree now."""
    mine = str(os.getpid())
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if any("autobatch.train.launcher" in part for part in cmd) and mine in cmd:
            found.append(proc)
    return found


def objective(name: str) -> Objective:
    space = SearchSpace(batch_sizes=(16, 32), anchor_batch=16, lr_fixed=0.05)
    return Objective(runner=ParallelRunner(spec(name), CPU, 2), space=space, target=0.95,
                     trial_budget_s=2.0, bucket_base=0.01, world_size=2)


def test_two_ranks_stream_their_points_and_obey_a_stop():
    seen: list[EvalPoint] = []

    def third_stops(point: EvalPoint) -> bool:
        seen.append(point)
        return len(seen) == 3

    config = RunConfig(batch_size=16, lr=0.05, target=1.0, budget=Budget(steps=10_000), seed=3)
    result = ParallelRunner(spec("good"), CPU, 2).run(config, third_stops)
    assert result.stop_reason == "stopped" and list(result.trace) == seen
    assert result.config.world_size == 2 and result.samples == 16 * result.steps


def test_an_oom_on_one_rank_prunes_the_trial_on_all_ranks():
    study = optuna.create_study()
    study.enqueue_trial({"batch_size": 32})
    study.optimize(objective("oom_on_rank1"), n_trials=1)
    (trial,) = study.trials
    assert trial.state == TrialState.PRUNED and trial.user_attrs[keys.PRUNE_REASON] == "oom"
    assert launched_here() == []


@pytest.mark.slow
def test_a_killed_rank_fails_its_trial_and_the_study_goes_on_without_orphans():
    study = optuna.create_study()
    study.enqueue_trial({"batch_size": 32})  # rank 1 is killed at micro-batches of 16
    study.enqueue_trial({"batch_size": 16})
    study.optimize(objective("rank1_killed"), n_trials=2, catch=(TrialCrashed,))
    killed, fine = study.trials
    assert killed.state == TrialState.FAIL
    assert killed.user_attrs[keys.FAIL_REASON] == "rank_died"
    assert fine.state == TrialState.COMPLETE and fine.user_attrs["world_size"] == 2
    assert launched_here() == []


@pytest.mark.slow
def test_a_hung_rank_ends_its_trial_within_the_collective_timeout(monkeypatch):
    monkeypatch.setenv("AUTOBATCH_RANK_TIMEOUT_S", "2")
    config = RunConfig(batch_size=32, lr=0.05, budget=Budget(steps=10), seed=3)
    started = time.monotonic()
    with pytest.raises(RankDied, match="still running .* after rank 0 ended"):
        ParallelRunner(spec("rank1_hangs"), CPU, 2).run(config, lambda point: False)
    assert time.monotonic() - started < 60
    assert launched_here() == []


def test_rank_counts_below_one_or_above_the_cuda_devices_given_are_refused():
    with pytest.raises(ConfigError, match="--nproc-per-trial must be an integer >= 1, got 0"):
        check_nproc(0, CPU, None)
    with pytest.raises(ConfigError, match="--nproc-per-trial 3 needs 3 CUDA devices .* but "
                                          "2 are given"):
        check_nproc(3, torch.device("cuda", 0), ("0", "1"))
    check_nproc(2, torch.device("cuda", 0), ("0", "1"))
    check_nproc(4, CPU, None)  # CPU ranks share the machine's cores


@pytest.mark.gpu
def test_a_one_rank_nccl_job_trains_on_cuda():
    config = RunConfig(batch_size=16, lr=0.05, budget=Budget(steps=5), seed=3)
    result = ParallelRunner(spec("good"), torch.device("cuda", 0), 1).run(
        config, lambda point: False)
    assert result.steps == 5 and result.device == torch.cuda.get_device_name(0)
