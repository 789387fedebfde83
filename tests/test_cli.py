import json
import logging
import os
import re
import subprocess
import sys
import time

import optuna
import pytest
import torch
from typer.testing import CliRunner

from autobatch import Hyperparams
from autobatch.workloads import BUILTINS
from autobatch_cli.output import NoticeFormatter
from tests.conftest import FIXTURES, invoke

runner = CliRunner()


def strict_json(text: str):
    def reject(constant):
        raise ValueError(f"non-strict JSON constant {constant}")

    return json.loads(text, parse_constant=reject)


def test_workloads_lists_the_builtins_one_line_each():
    result = invoke("workloads")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    for name in ("mnist1d-cnn", "mnist1d-mlp", "mnist1d-long", "digits-cnn", "torchvision:M",
                 "module:func"):
        assert sum(line.startswith(name) for line in lines) == 1
    # each built-in's reference recipe and suggested target on the line below it
    below = lines[lines.index(next(x for x in lines if x.startswith("mnist1d-long"))) + 1]
    assert below.split() == ["reference:", "batch", "128,", "lr", "0.001,", "momentum", "0.9,",
                             "optimizer", "adam,", "schedule", "cosine,", "horizon",
                             "30epochs;", "suggested", "target", "0.88"]
    assert sum("reference:" in line for line in lines) == len(BUILTINS)


def test_workloads_json_lists_every_builtin_with_its_reference_and_target():
    result = invoke("workloads", "--json")
    assert result.exit_code == 0, result.output
    listed = strict_json(result.stdout)
    assert [entry["name"] for entry in listed] == list(BUILTINS)
    for entry in listed:
        builtin = BUILTINS[entry["name"]]
        assert set(entry) == {"name", "description", "reference", "target"}
        assert entry["description"] == builtin.description
        assert Hyperparams.from_dict(entry["reference"]) == builtin.reference
        assert entry["target"] == builtin.target


def test_run_without_batch_size_or_lr_trains_the_reference_recipe_and_says_so():
    result = invoke("run", "--workload", "mnist1d-cnn", "--budget", "2steps", "--device", "cpu",
                    "--json")
    assert result.exit_code == 0, result.output
    assert "training mnist1d-cnn's reference recipe" in result.stderr
    config = strict_json(result.stdout)["config"]
    assert Hyperparams.from_dict(config) == BUILTINS["mnist1d-cnn"].reference
    given = invoke("run", "--workload", "mnist1d-cnn", "--lr", "0.1", "--budget", "2steps")
    assert given.exit_code == 0 and "reference recipe" not in given.stderr


def test_run_trains_a_decaying_schedule_to_its_horizon_without_a_budget():
    result = invoke("run", "--app-dir", str(FIXTURES), "--workload", "user_workloads:good",
                    "--batch-size", "16", "--lr", "0.1", "--schedule", "cosine", "--horizon",
                    "2epochs", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    payload = strict_json(result.stdout)
    # 128 samples in batches of 16: 8 steps per epoch
    assert (payload["steps"], payload["stop_reason"]) == (16, "budget")
    assert payload["config"]["budget"] == {"seconds": None, "steps": None, "epochs": 2.0}


def test_run_json_reports_time_to_target_and_steps():
    result = invoke("run", "--workload", "mnist1d-cnn", "--batch-size", "256", "--lr", "0.3",
                    "--momentum", "0.9", "--target", "0.9", "--budget", "1500steps",
                    "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    payload = strict_json(result.stdout)
    assert payload["target_reached"] is True
    assert payload["time_to_target_s"] > 0
    assert payload["steps_to_target"] == payload["steps"] > 0
    assert payload["stop_reason"] == "target"
    assert payload["best_metric"] >= 0.9
    for key in ("samples", "epochs", "samples_per_s", "eval_seconds", "trace"):
        assert key in payload


def test_run_with_a_schedule_names_it_with_its_steps_and_replays_a_result_file(tmp_path):
    args = ["run", "--app-dir", str(FIXTURES), "--workload", "user_workloads:good",
            "--budget", "100steps", "--device", "cpu", "--json"]
    result = invoke(*args, "--batch-size", "16", "--lr", "0.1", "--schedule", "wsd",
                    "--warmup", "5%", "--horizon", "5epochs", "--cooldown", "25%")
    assert result.exit_code == 0, result.output
    payload = strict_json(result.stdout)
    assert payload["config"]["schedule"] == {"name": "wsd", "warmup": "5%",
                                             "horizon": "5epochs", "cooldown": 0.25}
    # 128 samples in batches of 16: 8 steps per epoch, 40 in the horizon
    assert {k: payload["schedule"][k] for k in ("warmup_steps", "horizon_steps",
                                                "cooldown_steps")} == {
        "warmup_steps": 2, "horizon_steps": 40, "cooldown_steps": 10}
    assert payload["steps"] == 40 and payload["trace"][-1]["lr"] < 0.1
    best = tmp_path / "best.json"
    best.write_text(json.dumps({"workload": "user-good", "batch_size": 16, "lr": 0.1,
                                "momentum": 0.9, "optimizer": None,
                                "schedule": payload["config"]["schedule"]}))
    again = invoke(*args, "--recipe", str(best))
    assert again.exit_code == 0, again.output
    replayed = strict_json(again.stdout)
    assert replayed["config"] == payload["config"]
    assert replayed["trace"][-1]["lr"] == payload["trace"][-1]["lr"]
    other = invoke("run", "--workload", "mnist1d-cnn", "--recipe", str(best))
    assert other.exit_code == 2 and "is for workload 'user-good'" in other.stderr


def test_run_reports_divergence_instead_of_crashing():
    result = invoke("run", "--workload", "mnist1d-cnn", "--batch-size", "256", "--lr", "30",
                    "--target", "0.9", "--json")
    assert result.exit_code == 0, result.output
    payload = strict_json(result.stdout)
    assert payload["stop_reason"] == "diverged"
    assert payload["target_reached"] is False and payload["time_to_target_s"] is None


def test_run_torchvision_fake_trains_for_the_budget_and_reports_throughput():
    result = invoke("run", "--workload", "torchvision:resnet18", "--data", "fake",
                    "--image-size", "32", "--batch-size", "8", "--budget", "1s", "--json")
    assert result.exit_code == 0, result.output
    payload = strict_json(result.stdout)
    assert payload["stop_reason"] == "budget"
    assert 1.0 <= payload["train_seconds"] < 3.0
    assert payload["samples_per_s"] > 0
    assert payload["config"]["lr"] == 0.1  # the reference recipe fills the LR


def test_run_user_entry_point_with_app_dir():
    result = invoke("run", "--workload", "user_workloads:good", "--app-dir", str(FIXTURES),
                    "--batch-size", "16", "--lr", "0.1", "--target", "0.9", "--json")
    assert result.exit_code == 0, result.output
    assert strict_json(result.stdout)["workload"] == "user-good"


BAD_INPUT = [
    (["--workload", "nope"], "unknown workload 'nope'"),
    (["--workload", "user_workloads.good"], "has no ':'"),
    (["--workload", "user_missing_mod:good"], "module 'user_missing_mod' not found"),
    (["--workload", "user_workloads:absent"], "has no attribute 'absent'"),
    (["--workload", "user_workloads:returns_int"], "returned int"),
    (["--workload", "user_workloads:empty_train"], "the training set is empty"),
    (["--workload", "user_workloads:labels_out_of_range"], "labels span 5..6"),
    (["--workload", "user_workloads:good", "--batch-size", "4096"],
     "fewer than one batch of 4096"),
    (["--workload", "torchvision:resnet18", "--data", "/nonexistent/images"],
     "does not exist"),
    (["--device", "cuda:7"], "cuda:7"),
    (["--device", "tpu"], "device must be auto, cpu, cuda or cuda:N"),
    (["--batch-size", "0"], "batch_size must be an integer >= 1, got 0"),
    (["--lr", "0"], "lr must be > 0"),
    (["--lr", "-1"], "lr must be > 0"),
    (["--budget", "0s"], "budget must be > 0"),
    (["--budget", "forever"], "budget must look like"),
    (["--momentum", "1"], r"momentum must be in [0, 1)"),
    (["--target", "1.5"], "target must be in (0, 1]"),
    (["--target", "0"], "target must be in (0, 1]"),
    (["--optimizer", "lbfgs"], "optimizer must be 'sgd' or 'adam'"),
    (["--schedule", "step"], "schedule must be one of constant, cosine, linear, wsd"),
    (["--schedule", "cosine", "--warmup", "200steps", "--horizon", "100steps"],
     "warmup 200steps must be shorter than the horizon 100steps"),
    (["--schedule", "wsd", "--horizon", "100steps", "--cooldown", "150%"],
     "cooldown must be in (0, 1), got 1.5"),
    (["--horizon", "4epochs"], "a constant schedule has no horizon"),
    (["--schedule", "cosine", "--horizon", "4epochs", "--budget", "10steps"],
     "horizon 4epochs (32 steps) is longer than the budget (10 steps)"),
    (["--schedule", "cosine", "--horizon", "30s"], "horizon '30s' is in seconds"),
    (["--schedule", "cosine"], "a cosine schedule needs a horizon in steps or epochs"),
    (["--recipe", "/nonexistent/best.json"], "recipe file '/nonexistent/best.json' does not"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_run_bad_input_exits_2_with_a_message_naming_it(args, message):
    base = {"--workload": "user_workloads:good", "--batch-size": "16", "--lr": "0.1"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    argv = ["run", "--app-dir", str(FIXTURES)] + [x for kv in base.items() for x in kv]
    result = invoke(*argv)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.count("\n") <= 2  # one line, not a traceback
    assert result.stdout == ""


def test_users_import_error_keeps_its_traceback():
    result = invoke("run", "--workload", "user_broken_import:workload",
                    "--app-dir", str(FIXTURES), "--batch-size", "8", "--lr", "0.1")
    assert result.exit_code == 1
    assert isinstance(result.exception, ModuleNotFoundError)
    assert result.exception.name == "autobatch_no_such_dependency"


def test_console_script_prints_strict_json_and_plain_stderr():
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "autobatch_cli", "run", "--workload", "digits-cnn",
         "--batch-size", "64", "--lr", "0.1", "--budget", "20steps", "--json"],
        capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert strict_json(proc.stdout)["steps"] == 20
    assert "\x1b[" not in proc.stderr and "\x1b[" not in proc.stdout


def test_library_notices_read_as_warnings_without_the_loggers_name(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "autobatch_cli", "run", "--workload", "digits-cnn",
         "--data", str(tmp_path), "--batch-size", "64", "--lr", "0.1", "--budget", "5steps"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "warning: --data does not apply to digits-cnn; ignored\n" in proc.stderr
    assert "WARNING" not in proc.stderr and "autobatch.workloads" not in proc.stderr
    record = logging.LogRecord("autobatch.x", logging.WARNING, "f.py", 1, "cache %s", ("c",),
                               None)
    assert NoticeFormatter().format(record) == "warning: cache c"


def test_console_script_bad_option_exits_2():
    proc = subprocess.run(
        [sys.executable, "-m", "autobatch_cli", "run", "--workload", "digits-cnn",
         "--batch-size", "many"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--batch-size" in proc.stderr


TUNE_BAD_INPUT = [
    (["--n-trials", "0"], "n_trials must be >= 1"),
    (["--min-batch", "64", "--max-batch", "32"], "min_batch 64 is larger than max_batch 32"),
    (["--lr-range", "1:0.001"], "lr_range must satisfy 0 < low <= high"),
    (["--lr-range", "0:1"], "lr_range must satisfy 0 < low"),
    (["--lr-range", "1e-3:inf"], "lr_range must satisfy 0 < low <= high < inf"),
    (["--target", "1.5"], "target must be in (0, 1]"),
    (["--momentum", "1"], "momentum must be in [0, 1)"),
    (["--timeout", "soon"], "timeout must be a duration like"),
    (["--device", "cuda:3"], "cuda:3"),
    (["--format", "xml"], "--format must be json, yaml or env"),
    (["--workload", "nope"], "unknown workload 'nope'"),
    (["--output", "/nonexistent/dir/best.json"], "--output folder '/nonexistent/dir'"),
    (["--schedule", "step"], "schedule must be one of auto, constant, cosine, linear, wsd"),
]


@pytest.mark.parametrize(("args", "message"), TUNE_BAD_INPUT)
def test_tune_bad_input_exits_2_before_writing_anything(tmp_path, args, message):
    base = {"--workload": "digits-cnn", "--target": "0.9",
            "--storage": f"sqlite:///{tmp_path}/study.db"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    result = invoke("tune", *[x for kv in base.items() for x in kv])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not (tmp_path / "study.db").exists()


def test_tune_profile_file_is_refused_up_front_in_one_line(tmp_path):
    from tests.measure.test_trust import profiler

    saved = profiler([None])()  # of the workload "tiny", not digits-cnn
    saved.save(tmp_path / "tiny.json")
    (tmp_path / "torn.json").write_text("{torn")
    (tmp_path / "other.json").write_text('{"rows": []}')
    cases = {"missing.json": "does not exist", "torn.json": "is not a profile from "
             "`autobatch profile --json` or --save (JSONDecodeError:",
             "other.json": "is not a profile", ".": "is a directory",
             "tiny.json": "profiles workload 'tiny', not 'digits-cnn'"}
    for name, message in cases.items():
        path = tmp_path / name
        result = invoke("tune", "--workload", "digits-cnn", "--target", "0.9", "--storage",
                        f"sqlite:///{tmp_path}/study.db", "--profile", str(path))
        assert result.exit_code == 2, result.output
        assert f"--profile {str(path)!r} {message}" in " ".join(result.stderr.split())
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "study.db").exists()


def test_tune_on_devices_this_machine_lacks_exits_2_before_creating_the_study(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA devices")
    journal = tmp_path / "study.log"
    result = invoke("tune", "--workload", "digits-cnn", "--target", "0.9", "--storage",
                    f"journal:///{journal}", "--devices", "0,1")
    assert result.exit_code == 2, result.output
    assert "devices 0,1 requested, but 0 CUDA device(s) are visible" in result.stderr
    assert not journal.exists()


@pytest.mark.parametrize(("entry", "message"), [
    ("user_workloads:empty_train", "the training set is empty"),
    ("user_workloads:labels_out_of_range", "labels span 5..6 but the model has 2 outputs"),
])
def test_tune_bad_data_exits_2_before_creating_a_study(tmp_path, entry, message):
    result = invoke("tune", "--workload", entry, "--app-dir", str(FIXTURES), "--target", "0.9",
                    "--storage", f"sqlite:///{tmp_path}/study.db")
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not (tmp_path / "study.db").exists()


def test_tune_new_study_starts_beside_a_study_with_another_target(tmp_path):
    common = ["tune", "--workload", "user_workloads:good", "--app-dir", str(FIXTURES),
              "--n-trials", "2", "--verify", "0", "--no-compare", "--storage",
              f"sqlite:///{tmp_path}/study.db", "--study-name", "s"]
    assert invoke(*common, "--target", "0.9").exit_code == 0
    refused = invoke(*common, "--target", "0.8")
    assert refused.exit_code == 2 and "target: 0.9 -> 0.8" in refused.stderr
    fresh = invoke(*common, "--target", "0.8", "--new-study")
    assert fresh.exit_code == 0, fresh.output
    names = optuna.get_all_study_names(f"sqlite:///{tmp_path}/study.db")
    assert len(names) == 2 and "s" in names


def test_live_view_shows_the_trials_the_best_and_the_time_left():
    from rich.console import Console

    from autobatch.events import TuneEvent
    from autobatch_cli.progress import Progress

    progress = Progress(timeout_s=120, started=time.time() - 20)
    trial = optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE, value=1.25,
        user_attrs={"target_reached": True, "batch_size": 256, "lr": 0.135, "momentum": 0.95})
    progress(TuneEvent("trial", "0", trial=trial))
    console = Console(record=True, width=120)
    console.print(progress._render())
    text = console.export_text()
    assert re.search(r"\((99|100)s of the timeout left\); best 1\.250s", text), text
    assert re.search(r"complete\s+│\s+256\s+│\s+0\.135\s+│\s+0\.95\s+│\s+1\.250s", text), text


def test_warnings_and_the_verdict_stay_above_the_live_view():
    from rich.console import Console
    from rich.live import Live

    from autobatch.events import TuneEvent
    from autobatch_cli.progress import Progress

    console = Console(record=True, width=120, force_terminal=True)
    progress = Progress()
    progress._live = Live(console=console, auto_refresh=False,
                          get_renderable=progress._render)
    with progress._live:
        progress(TuneEvent("stage", "warning", "the LR range test's loss never fell"))
        progress(TuneEvent("stage", "verdict", "keep_reference: keep your recipe"))
        progress(TuneEvent("stage", "study", "20 trials, 1 worker(s)"))
    text = console.export_text()
    assert "warning: the LR range test's loss never fell" in text
    assert "verdict: keep_reference: keep your recipe" in text


def test_tune_output_that_cannot_be_written_fails_after_showing_the_result(tmp_path):
    (tmp_path / "best.json").mkdir()  # exists, but as a folder: the write fails at the end
    db = f"sqlite:///{tmp_path}/study.db"
    result = invoke("tune", "--workload", "user_workloads:good", "--app-dir", str(FIXTURES),
                    "--target", "0.9", "--n-trials", "2", "--verify", "0", "--no-compare",
                    "--storage", db, "--study-name", "s", "--format", "env",
                    "--output", str(tmp_path / "best.json"))
    assert result.exit_code == 2, result.output
    assert "cannot write result to" in result.stderr
    assert "AUTOBATCH_BATCH_SIZE=" in result.stdout  # the recommendation was shown
    study = optuna.load_study(study_name="s", storage=db)  # and the study is kept
    assert len([t for t in study.trials if t.state.is_finished()]) == 2


@pytest.mark.parametrize(("command", "key"), [
    (["run", "--batch-size", "16", "--lr", "0.1", "--budget", "5steps"], "steps"),
    (["probe", "--max-batch", "64", "--no-cache"], "max_batch_size"),
    (["profile", "--batch-sizes", "4,8", "--no-noise"], "rows"),
])
def test_what_user_code_prints_goes_to_stderr_and_json_keeps_stdout(command, key):
    """From the workload's construction on, through forked probes and training alike."""
    proc = subprocess.run(
        [sys.executable, "-m", "autobatch_cli", *command, "--workload", "user_workloads:chatty",
         "--app-dir", str(FIXTURES), "--device", "cpu", "--json"],
        capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert key in strict_json(proc.stdout)
    for printed in ("building the chatty workload", "hello from the user's forward",
                    "native hello"):
        assert printed in proc.stderr


@pytest.mark.parametrize("command", [
    ["run", "--batch-size", "16", "--lr", "0.1", "--budget", "5steps"],
    ["probe", "--no-cache"],
    ["profile", "--batch-sizes", "4,8", "--no-noise"],
])
def test_sys_exit_in_training_code_is_an_error_of_that_code_never_success(command):
    proc = subprocess.run(
        [sys.executable, "-m", "autobatch_cli", *command, "--workload", "user_workloads:exits",
         "--app-dir", str(FIXTURES), "--device", "cpu", "--json"],
        capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    assert "the workload's code called sys.exit(0)" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_what_user_code_prints_leaves_tune_env_output_safe_to_eval(tmp_path):
    common = ["--workload", "user_workloads:chatty", "--app-dir", str(FIXTURES)]
    tune = subprocess.run(
        [sys.executable, "-m", "autobatch_cli", "tune", *common, "--target", "0.9",
         "--batch-size", "16", "--lr", "0.1", "--n-trials", "2", "--verify", "1",
         "--no-compare", "--storage", f"sqlite:///{tmp_path}/s.db", "--format", "env"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert tune.returncode == 0, tune.stderr
    lines = tune.stdout.splitlines()
    assert lines and all(line.startswith("AUTOBATCH_") for line in lines), tune.stdout
    assert "native hello" in tune.stderr


def test_closing_table_keeps_each_configuration_on_one_line_in_80_columns():
    from dataclasses import replace

    from rich.console import Console

    from autobatch.schedule import Schedule
    from autobatch_cli.tune import closing_table
    from tests.conftest import candidate
    from tests.test_result import result

    names = ("trial 3", "reference recipe", "largest batch + sqrt rule")
    cosine = Schedule(name="cosine", warmup="5%", horizon="40epochs")
    candidates = tuple(candidate(name=name, tuned=False, batch_size=2048, lr=0.765,
                                 schedule=cosine, runs=(None, None, None), trial_number=None)
                       for name in names[1:])
    console = Console(width=80, force_terminal=False, record=True)
    console.print(closing_table(replace(result(), candidates=(result().best, *candidates))))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    for name in names:
        assert re.search(rf"^\W*{re.escape(name)}\W", text, re.M), text


def test_long_stage_progress_updates_the_status_line_or_prints_now_and_then(capsys):
    from autobatch.events import TuneEvent
    from autobatch_cli.progress import Progress

    now = [0.0]
    progress = Progress()  # not a terminal here: plain lines
    progress.clock = lambda: now[0]
    for second in range(25):
        now[0] = float(second)
        progress(TuneEvent("progress", "profile", f"batch 8: measurement {second + 1} of 25"))
    progress(TuneEvent("progress", "lr_range", "step 0 of 100, LR 1e-05"))
    err = capsys.readouterr().err
    # a stage's first step, then one line per 10 s, not one per event; the live view's
    # title shows the latest
    assert re.findall(r"profile: batch 8: measurement (\d+) of 25", err) == ["1", "11", "21"]
    assert "lr_range: step 0 of 100, LR 1e-05" in err
    assert progress.stage == "lr_range: step 0 of 100, LR 1e-05"


def test_tune_with_rungs_on_a_server_without_a_checkpoint_dir_exits_2_before_opening_it():
    # the server is never contacted: the refusal comes first
    result = invoke("tune", "--workload", "digits-cnn", "--target", "0.9", "--rungs", "on",
                    "--storage", "postgresql://nobody:secret@127.0.0.1:1/none")
    assert result.exit_code == 2, result.output
    assert "give --checkpoint-dir for the storage" in result.stderr
    assert "secret" not in result.stderr


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--rungs", "sometimes", "rungs must be one of auto, on, off, got 'sometimes'"),
    ("--keep-model", "/no/such/folder/model.pt", "--keep-model folder '/no/such/folder'"),
])
def test_tune_refuses_bad_rung_options(option, value, message):
    result = invoke("tune", "--workload", "digits-cnn", "--target", "0.9", option, value)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
