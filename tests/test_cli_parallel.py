"""--nproc-per-trial on the command line: the bad inputs (exit 2, naming the numbers),
and data-parallel runs and probes end to end on gloo ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import FIXTURES, invoke

USER_GOOD = ["--workload", "user_workloads:good", "--app-dir", str(FIXTURES)]


@pytest.mark.parametrize("command", [
    ["run", *USER_GOOD, "--batch-size", "16", "--lr", "0.1"],
    ["probe", *USER_GOOD],
    ["profile", *USER_GOOD],
    ["worker", "--study-name", "s", "--storage", "postgresql://nobody@127.0.0.1:1/none"],
])
def test_fewer_than_one_rank_is_refused_by_every_command(command):
    result = invoke(*command, "--nproc-per-trial", "0")
    assert result.exit_code == 2, result.output
    assert "--nproc-per-trial must be an integer >= 1, got 0" in result.output


def test_more_ranks_than_the_cuda_devices_given_are_refused(tmp_path):
    result = invoke("tune", *USER_GOOD, "--target", "0.9", "--devices", "0",
                    "--nproc-per-trial", "2", "--storage", f"sqlite:///{tmp_path}/s.db")
    assert result.exit_code == 2, result.output
    assert "--nproc-per-trial 2 needs 2 CUDA devices (one per rank), but 1 are given" \
        in result.output


def test_a_global_batch_the_ranks_cannot_split_evenly_is_refused():
    result = invoke("run", *USER_GOOD, "--batch-size", "15", "--lr", "0.1",
                    "--nproc-per-trial", "2")
    assert result.exit_code == 2, result.output
    assert "batch size 15 is not divisible by world size 2 x accumulation steps 1 = 2" \
        in result.output


def test_a_script_cannot_be_split_over_ranks():
    result = invoke("run", "--batch-size", "16", "--lr", "0.1", "--nproc-per-trial", "2",
                    "--", sys.executable, "train.py")
    assert result.exit_code == 2, result.output
    assert "--nproc-per-trial 2 needs a workload loaded by name" in result.output


def autobatch_json(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "autobatch_cli", *args, "--json"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_COLOR": "1"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_a_two_rank_run_of_mnist1d_cnn_reaches_its_target_and_says_world_size_2():
    result = autobatch_json("run", "--workload", "mnist1d-cnn", "--batch-size", "256",
                            "--lr", "0.3", "--momentum", "0.9", "--target", "0.9",
                            "--nproc-per-trial", "2", "--grad-accum", "2",
                            "--budget", "2000steps")  # steps: the machine's load aside
    assert result["target_reached"] and result["best_metric"] >= 0.9
    config = result["config"]
    assert (config["world_size"], config["grad_accum"], config["batch_size"]) == (2, 2, 256)


@pytest.mark.slow
def test_a_two_rank_probe_of_mnist1d_cnn_answers_a_per_device_batch():
    result = autobatch_json("probe", "--workload", "mnist1d-cnn", "--nproc-per-trial", "2")
    assert result["ranks"] == 2 and result["max_batch_size"] >= 1


@pytest.mark.slow
def test_a_tune_of_two_rank_trials_recommends_a_global_batch(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "autobatch_cli", "tune", *USER_GOOD, "--target", "0.9",
         "--n-trials", "2", "--nproc-per-trial", "2", "--verify", "0", "--no-compare",
         "--storage", f"sqlite:///{tmp_path}/s.db", "--output", str(tmp_path / "best.json"),
         "--timeout", "300"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "NO_COLOR": "1"})
    assert proc.returncode == 0, proc.stderr
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["batch_size"] % 2 == 0 and best["world_size"] == 2, best
