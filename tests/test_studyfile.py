from pathlib import Path

import pytest

from autobatch import ConfigError
from autobatch.studyfile import TuneOptions, parse_range, parse_seconds
from autobatch.workloads import ScriptWorkload, load_workload

ROOT = Path(__file__).parent.parent
STUDIES = sorted((ROOT / "studies").glob("*.toml"))


def test_the_study_files_we_ship_exist():
    names = {p.stem for p in STUDIES}
    assert {"mnist1d-cnn", "mnist1d-mlp", "digits-cnn", "imagefolder-resnet18",
            "lightning-blobs", "hf-bert-tokens"} <= names


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_every_study_file_loads_and_validates(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # a study's app-dir is relative to the repository root
    options = TuneOptions.from_file(path)
    config = options.tune_config()
    assert config.target == options.target
    if options.workload.startswith("torchvision:"):
        assert options.workload_options["data"]  # the kind's options land with the kind
    elif options.workload.startswith("script:"):
        assert isinstance(load_workload(options.workload), ScriptWorkload)
    else:
        workload = load_workload(options.workload, **options.workload_options)
        assert workload.spec == {"spec": options.workload, **options.workload_options}


def test_command_line_values_override_the_file():
    file = TuneOptions(target=0.9, timeout="2m", workload_options={"data": "a", "image_size": 32})
    cli = TuneOptions(target=0.95, timeout=None, workload_options={"data": "b", "app_dir": None})
    assert cli.over(file) == TuneOptions(target=0.95, timeout="2m",
                                         workload_options={"data": "b", "image_size": 32})


def test_unknown_keys_are_named(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('workload = "digits-cnn"\ntarget = 0.9\nbatchsize = 3\n')
    with pytest.raises(ConfigError, match="unknown keys: batchsize"):
        TuneOptions.from_file(path)


def test_bad_toml_and_missing_file_are_reported(tmp_path):
    (tmp_path / "bad.toml").write_text("target = = 1")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        TuneOptions.from_file(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        TuneOptions.from_file(tmp_path / "absent.toml")


def test_text_values_are_parsed():
    config = TuneOptions(target=0.9, timeout="10m", lr_range="1e-3:1",
                         momentum_range=[0.5, 0.95], memory_limit="1GiB",
                         trial_budget="30s", time="modeled").tune_config()
    assert config.timeout_s == 600 and config.trial_budget == 30
    assert config.lr_range == (1e-3, 1.0) and config.momentum_range == (0.5, 0.95)
    assert config.memory_limit == 2**30 and config.time_mode == "modeled"


def test_trial_budget_defaults_to_a_share_of_the_timeout():
    assert TuneOptions(target=0.9, timeout="100s").tune_config().trial_budget == 15.0
    assert TuneOptions(target=0.9).tune_config().trial_budget == 60.0


@pytest.mark.parametrize(("options", "match"), [
    ({}, "target is required"),
    ({"target": 1.5}, r"target must be in \(0, 1\]"),
    ({"target": 0.9, "n_trials": 0}, "n_trials must be >= 1"),
    ({"target": 0.9, "min_batch": 64, "max_batch": 32}, "min_batch 64 is larger than max_batch 32"),
    ({"target": 0.9, "lr_range": "1:0.1"}, "lr_range must satisfy 0 < low <= high"),
    ({"target": 0.9, "lr_range": "fast"}, "lr_range must look like LOW:HIGH"),
    ({"target": 0.9, "lr_range": "0:1"}, "lr_range must satisfy 0 < low"),
    ({"target": 0.9, "momentum": 1.0}, r"momentum must be in \[0, 1\)"),
    ({"target": 0.9, "timeout": "5steps"}, "timeout must be a duration"),
    ({"target": 0.9, "time": "cpu"}, "time_mode must be measured or modeled"),
    ({"target": 0.9, "headroom": 0.95}, r"headroom must be in \[0, 0.9\)"),
])
def test_bad_options_name_the_problem(options, match):
    with pytest.raises(ConfigError, match=match):
        TuneOptions(**options).tune_config()


def test_parsers_directly():
    assert parse_seconds("timeout", "90") == 90
    assert parse_seconds("timeout", "5min") == parse_seconds("timeout", "5m") == 300
    for wrong in ("5x", "2000steps"):  # the error names the option, not a "budget"
        with pytest.raises(ConfigError, match=rf"^timeout must be a duration like 90s, 5min, "
                                              rf"10m or 1h, got '{wrong}'$"):
            parse_seconds("timeout", wrong)
    assert parse_range("r", "0.1:0.2") == (0.1, 0.2)


@pytest.mark.slow
def test_the_smallest_study_file_runs_end_to_end(tmp_path):
    """CI runs studies/digits-cnn.toml through the real command (a shorter budget)."""
    import json
    import subprocess
    import sys

    study = Path(__file__).parent.parent / "studies" / "digits-cnn.toml"
    proc = subprocess.run(
        [sys.executable, "-m", "autobatch_cli", "tune", "--config", str(study),
         # the trial count bounds the work; the time budgets hold at a 3x slowdown
         "--timeout", "300s", "--trial-budget", "20s", "--n-trials", "6",
         "--storage", f"sqlite:///{tmp_path}/s.db", "--output", str(tmp_path / "best.json")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["workload"] == "digits-cnn" and best["target"] == 0.97
    assert best["batch_size"] in best["prior"]["batch_sizes"]


@pytest.mark.slow
def test_the_script_study_file_runs_end_to_end(tmp_path):
    """studies/script-blobs.toml: a plain script with its own loop, tuned to a target
    through the real command (each trial a fresh Python process)."""
    import json
    import os
    import subprocess
    import sys

    root = Path(__file__).parent.parent
    # the study file's `python` is this interpreter, where autobatch is installed
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [sys.executable, "-m", "autobatch_cli", "tune", "--config", "studies/script-blobs.toml",
         "--min-batch", "32", "--max-batch", "128", "--timeout", "480s", "--n-trials", "3",
         "--verify", "1", "--verify-runs", "1", "--no-compare",
         "--storage", f"sqlite:///{tmp_path}/s.db", "--output", str(tmp_path / "best.json")],
        capture_output=True, text=True, timeout=900, cwd=root, env=env)
    assert proc.returncode == 0, proc.stderr
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["workload"] == "script:studies/script_blobs.py" and best["target"] == 0.9
    assert best["batch_size"] in (32, 64, 128) and 0.01 <= best["lr"] <= 1.0
    assert best["spread"]["reached"] == 1


@pytest.mark.parametrize(("content", "match"), [
    ('target = "0.9"', r"line 1: target must be a number, got '0.9'"),
    ('target = 0.9\ncompare = "no"', r"line 2: compare must be true or false, got 'no'"),
    ("target = 0.9\nworkload = 3", r"line 2: workload must be text, got 3"),
    ("target = 0.9\nlr-range = [[1, 2], [3]]", r"lr-range must be text or \[low, high\]"),
    ("target = 0.9\nmemory-limit = 1.5", r"memory-limit must be text or a whole number"),
    ("target = 0.9\nn_trials = true", r"n-trials must be a whole number, got True"),
    ("target = 0.9\nimage-size = 3.5", r"image-size must be a whole number"),
])
def test_a_value_of_the_wrong_type_is_named_with_its_line(tmp_path, content, match):
    path = tmp_path / "s.toml"
    path.write_text(content + "\n")
    with pytest.raises(ConfigError, match=match):
        TuneOptions.from_file(path)


def test_a_folder_or_non_utf8_bytes_are_not_a_study_file(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        TuneOptions.from_file(tmp_path)
    (tmp_path / "latin1.toml").write_bytes('workload = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        TuneOptions.from_file(tmp_path / "latin1.toml")


@pytest.mark.parametrize(("options", "match"), [
    ({"target": 0.9, "lr_range": "1e-3:inf"}, r"lr_range must satisfy 0 < low <= high < inf"),
    ({"target": 0.9, "lr_range": [[1, 2], 3]}, "lr_range must look like LOW:HIGH"),
])
def test_ranges_are_finite_and_well_formed(options, match):
    with pytest.raises(ConfigError, match=match):
        TuneOptions(**options).tune_config()
