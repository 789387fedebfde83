"""The trial protocol end to end: real child processes speaking to ScriptRunner.

The stub scripts load autobatch/script.py by its path (it imports nothing of
autobatch), so each child starts in milliseconds instead of importing torch.
"""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import autobatch.script as script
from autobatch.config import Budget, RunConfig, SearchBounds
from autobatch.device import is_oom
from autobatch.errors import ConfigError, TrialCrashed
from autobatch.hyperparams import Hyperparams
from autobatch.search.script_prior import check_script_bounds, measure_script
from autobatch.search.script_runner import ScriptRunner
from autobatch.workloads import ScriptWorkload, load_workload, script_spec

PRELUDE = f"""\
import importlib.util, os, sys, time
spec = importlib.util.spec_from_file_location("trial_api", {script.__file__!r})
api = importlib.util.module_from_spec(spec)
spec.loader.exec_module(api)
"""
CPU = torch.device("cpu")


def runner_of(tmp_path: Path, body: str, report_timeout: float = 20.0,
              command: list[str] | None = None) -> ScriptRunner:
    path = tmp_path / "train.py"
    path.write_text(PRELUDE + textwrap.dedent(body))
    workload = load_workload(script_spec(command or [sys.executable, str(path)]),
                             report_timeout=report_timeout)
    assert isinstance(workload, ScriptWorkload)
    return ScriptRunner(workload, CPU)


def config(target: float | None = 0.9, seconds: float = 30.0) -> RunConfig:
    return RunConfig(batch_size=16, lr=0.1, momentum=0.9, target=target,
                     budget=Budget(seconds=seconds))


REPORTS = """
trial = api.trial()
open(os.environ["OUT"], "w").write(f"{trial.batch_size} {trial.lr} {trial.momentum}\\n")
for metric in (0.5, 0.7, 0.95, 0.99):
    with trial.evaluating():
        time.sleep(0.05)
    for _ in range(3):
        trial.step()
    if trial.report(metric=metric, loss=1 - metric):
        open(os.environ["OUT"], "a").write(f"stopped at {metric}\\n")
        break
"""


def test_a_script_that_reaches_the_target_ends_its_run_there(tmp_path, monkeypatch):
    monkeypatch.setenv("OUT", str(tmp_path / "out.txt"))
    result = runner_of(tmp_path, REPORTS).run(config(), lambda point: False)
    assert result.target_reached and result.stop_reason == "target"
    assert [p.metric for p in result.trace] == [0.5, 0.7, 0.95]
    assert result.time_to_target_s == result.trace[-1].train_seconds
    assert result.steps_to_target == 9 and result.samples_to_target == 9 * 16
    # the evaluating() blocks are evaluation time, not training time
    assert sum(p.eval_seconds for p in result.trace) >= 0.15
    assert (tmp_path / "out.txt").read_text() == "16 0.1 0.9\nstopped at 0.95\n"


def test_the_pruner_stops_a_script_through_its_report(tmp_path, monkeypatch):
    monkeypatch.setenv("OUT", str(tmp_path / "out.txt"))
    seen = []
    result = runner_of(tmp_path, REPORTS).run(
        config(), lambda point: seen.append(point.metric) or len(seen) == 2)
    assert result.stop_reason == "stopped" and not result.target_reached
    assert seen == [0.5, 0.7] and result.best_metric == 0.7
    assert (tmp_path / "out.txt").read_text().endswith("stopped at 0.7\n")


def test_a_spent_budget_stops_the_script(tmp_path):
    body = """
    trial = api.trial()
    while True:
        time.sleep(0.2)
        if trial.report(metric=0.1):
            break
    """
    result = runner_of(tmp_path, body).run(config(seconds=0.3), lambda point: False)
    assert result.stop_reason == "budget" and len(result.trace) == 2


def test_a_silent_script_times_out_with_a_reason_and_its_group_is_killed(tmp_path):
    body = """
    import subprocess
    trial = api.trial()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    open(os.environ["PIDS"], "w").write(f"{os.getpid()} {child.pid}")
    time.sleep(60)
    """
    pids = tmp_path / "pids"
    os.environ["PIDS"] = str(pids)
    try:
        started = time.monotonic()
        with pytest.raises(TrialCrashed, match=r"sent no report for 1s") as caught:
            runner_of(tmp_path, body, report_timeout=1.0).run(config(), lambda point: False)
    finally:
        del os.environ["PIDS"]
    assert caught.value.reason == "no_report" and time.monotonic() - started < 30
    for pid in map(int, pids.read_text().split()):  # the grandchild too: no orphans
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"process {pid} outlived its trial")


def test_a_failing_script_fails_its_trial_with_its_output_tail(tmp_path):
    body = """
    trial = api.trial()
    print("loading shard 7", file=sys.stderr)
    raise RuntimeError("shard 7 is corrupt")
    """
    with pytest.raises(TrialCrashed, match=r"(?s)exited with status 1: .*shard 7 is corrupt") \
            as caught:
        runner_of(tmp_path, body).run(config(), lambda point: False)
    assert "loading shard 7" in str(caught.value) and caught.value.reason == "crashed"


def test_a_script_that_ends_without_reporting_says_what_is_missing(tmp_path):
    with pytest.raises(TrialCrashed, match=r"ended without reporting: call trial.report"):
        runner_of(tmp_path, "api.trial()\n").run(config(), lambda point: False)


def test_an_out_of_memory_exit_is_an_oom(tmp_path):
    body = """
    print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
          file=sys.stderr)
    sys.exit(1)
    """
    with pytest.raises(torch.OutOfMemoryError) as caught:
        runner_of(tmp_path, body).run(config(), lambda point: False)
    assert is_oom(caught.value)


def test_a_python_without_autobatch_is_named(tmp_path):
    # -I -S: no site-packages, so no autobatch, as in an environment it is not installed in
    command = [sys.executable, "-I", "-S", "-c", "import autobatch"]
    with pytest.raises(TrialCrashed, match=r"cannot import autobatch: install autobatch in "
                                           r"the environment") as caught:
        runner_of(tmp_path, "", command=command).run(config(), lambda point: False)
    assert caught.value.reason == "no_autobatch"


def test_measure_mode_times_the_scripts_steps(tmp_path):
    body = """
    trial = api.trial()
    assert trial.mode == "measure" and trial.batch_size == 32
    while not trial.step():
        time.sleep(0.01)
    """
    found = runner_of(tmp_path, body).measure(
        Hyperparams(batch_size=32, lr=0.1, momentum=0.9), steps=4, timeout_s=20)
    assert len(found["step_s"]) == 4 and min(found["step_s"][1:]) >= 0.01
    assert found["peak_bytes"] > 0


def test_evaluating_blocks_are_not_training_time():
    now = [0.0]
    trial = script.Trial({"mode": "train", "recipe": {"batch_size": 8, "lr": 0.1,
                                                      "momentum": 0.9}},
                         clock=lambda: now[0])
    now[0] = 2.0
    with trial.evaluating():
        now[0] = 5.0
    now[0] = 6.0
    assert trial.train_seconds() == 3.0


def test_trial_outside_autobatch_says_how_to_run_it(monkeypatch):
    monkeypatch.delenv(script.ENV, raising=False)
    with pytest.raises(script.NotInTrial, match=r"run this script through `autobatch tune "
                                                r"-- python SCRIPT"):
        script.trial()


def test_a_tuned_recipe_runs_standalone_outside_autobatch(tmp_path, monkeypatch):
    monkeypatch.delenv(script.ENV, raising=False)
    best = tmp_path / "best.json"
    best.write_text('{"batch_size": 96, "lr": 0.25, "momentum": 0.8, "optimizer": null}')
    trial = script.trial(best)
    assert (trial.batch_size, trial.lr, trial.momentum, trial.optimizer) == (96, 0.25, 0.8,
                                                                            "sgd")
    assert trial.report(metric=0.99) is False and trial.step() is False


def test_the_scripts_prior_is_its_steps_timed_up_to_the_batch_that_runs_out(tmp_path):
    body = """
    trial = api.trial()
    if trial.batch_size > 64:
        sys.exit("torch.OutOfMemoryError: CUDA out of memory")
    while not trial.step():
        time.sleep(0.001 * trial.batch_size)
    """
    events = []
    prior = measure_script(runner_of(tmp_path, body),
                           SearchBounds(min_batch=16, max_batch=256, lr_range=(0.01, 1.0)),
                           events.append)
    assert prior.probe.max_batch_size == 64 and prior.probe.limited_by == "memory"
    assert [(r.batch_size, r.fits) for r in prior.profile.rows] == [
        (16, True), (32, True), (64, True), (128, False)]
    assert prior.profile.beta > 0  # a step takes longer at a larger batch
    assert prior.space.batch_sizes == (16, 32, 64) and prior.space.schedules == ("constant",)
    assert prior.space.lr_range == (0.01, 1.0) and prior.lr_range is None
    assert any("batch 128" in e.message for e in events)


@pytest.mark.parametrize(("bounds", "match"), [
    (SearchBounds(), r"a script's batch must be bounded: give --max-batch"),
    (SearchBounds(max_batch=64, schedule="cosine"),
     r"schedule 'cosine': a script runs its own schedule"),
])
def test_a_scripts_tune_names_what_it_needs_from_the_user(bounds, match):
    with pytest.raises(ConfigError, match=match):
        check_script_bounds(bounds)
