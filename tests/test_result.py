import json
import os

import pytest

from autobatch import ConfigError
from autobatch.result import StudyInfo, TuneResult
from autobatch.schedule import Schedule
from tests.conftest import candidate


def result(best=None) -> TuneResult:
    best = best or candidate()
    ref = candidate(name="reference recipe", tuned=False, batch_size=100, lr=0.01,
                    optimizer="adam", runs=(3.0, 3.5, 4.0), trial_number=None)
    return TuneResult(workload="mnist1d-cnn", target=0.9, device="cpu", best=best,
                      candidates=(best, ref), prior={"max_batch_size": 3200, "b_sat": None},
                      study=StudyInfo(name="s", storage="postgresql://u:***@h/db", trials={}),
                      tuning_seconds=12.5, created_at="2026-11-22T00:00:00+0000",
                      train_size=3200)


COSINE = Schedule(name="cosine", warmup="5%", horizon="40epochs")


def test_json_has_the_schema_fields_and_is_strict():
    data = json.loads(result().render("json"))
    assert data["schema_version"] == 1
    assert (data["batch_size"], data["lr"], data["momentum"]) == (256, 0.3, 0.9)
    assert data["expected_time_to_target_s"] == 2.0
    assert data["spread"] == {"min": 1.0, "max": 2.0, "runs": 3, "reached": 2}
    assert [c["name"] for c in data["candidates"]] == ["trial 3", "reference recipe"]
    assert data["candidates"][1]["median_s"] == 3.5
    assert "***" in data["study"]["storage"]
    # 2 wins and 1 loss against the reference on 3 paired seeds: not shown faster
    assert data["verdict"] == "keep_reference"
    assert data["evidence"]["vs_reference"]["wins"] == 2
    assert data["evidence"]["vs_reference"]["p_value"] == 0.5
    assert data["candidates"][1]["interval"] == {"low": 3.0, "high": 4.0, "coverage": 0.75}
    # 12.5 s of tuning against the reference's median 3.5 s to the target
    assert data["break_even"] == pytest.approx(12.5 / 3.5)


def test_break_even_needs_a_reference_that_reached_the_target():
    missed = candidate(name="reference recipe", tuned=False, runs=(None, None, 1.0))
    assert TuneResult(**{**vars(result()), "candidates": (candidate(), missed)}).break_even() \
        is None
    assert TuneResult(**{**vars(result()), "candidates": (candidate(),)}).break_even() is None


def test_yaml_parses_to_the_same_data():
    yaml = pytest.importorskip("yaml")
    r = result()
    assert yaml.safe_load(r.render("yaml")) == json.loads(r.render("json"))


def test_env_format_is_shell_assignments():
    lines = result().render("env").splitlines()
    assert lines == ["AUTOBATCH_BATCH_SIZE=256", "AUTOBATCH_LR=0.3", "AUTOBATCH_MOMENTUM=0.9",
                     "AUTOBATCH_OPTIMIZER=", "AUTOBATCH_GRAD_ACCUM=1", "AUTOBATCH_WORLD_SIZE=1",
                     "AUTOBATCH_PRECISION=fp32", "AUTOBATCH_CHANNELS_LAST=0",
                     "AUTOBATCH_SCHEDULE=constant",
                     "AUTOBATCH_SCHEDULE_COOLDOWN=0.2", "AUTOBATCH_SCHEDULE_WARMUP_STEPS=0",
                     "AUTOBATCH_SCHEDULE_HORIZON_STEPS=", "AUTOBATCH_SCHEDULE_COOLDOWN_STEPS=",
                     "AUTOBATCH_TIME_TO_TARGET_S=2.0", "AUTOBATCH_VERDICT=keep_reference"]


def test_the_schedule_is_carried_with_its_step_counts_in_every_format():
    yaml = pytest.importorskip("yaml")
    r = result(candidate(schedule=COSINE))
    data = json.loads(r.render("json"))
    # 3200 samples in batches of 256: 12 steps per epoch; 40 epochs, 5% of them warmup
    assert data["schedule"] == {
        "name": "cosine", "warmup": "5%", "horizon": "40epochs", "cooldown": 0.2,
        "warmup_steps": 24, "horizon_steps": 480, "cooldown_steps": None,
        "per": "optimizer step", "formula": COSINE.resolve(12).words()}
    assert "cosine decay" in data["schedule"]["formula"]
    assert data["candidates"][0]["schedule"] == COSINE.to_dict()
    assert yaml.safe_load(r.render("yaml")) == data
    env = r.render("env")
    assert "AUTOBATCH_SCHEDULE=cosine\n" in env and "AUTOBATCH_SCHEDULE_HORIZON_STEPS=480\n" in env


def test_without_verification_the_study_value_is_the_expectation():
    data = json.loads(result(candidate(runs=())).render("json"))
    assert data["expected_time_to_target_s"] == 1.1


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "best.json"
    path.write_text("old")
    result().write(path)
    assert json.loads(path.read_text())["batch_size"] == 256
    assert os.listdir(tmp_path) == ["best.json"]


def test_unwritable_output_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot write result to"):
        result().write(tmp_path / "missing-dir" / "best.json")
    with pytest.raises(ConfigError, match="format must be json, yaml or env"):
        result().render("xml")
