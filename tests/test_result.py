import json
import os

import pytest

from autobatch import ConfigError
from autobatch.result import Candidate, TuneResult


def candidate(name="trial 3", runs=(1.0, 2.0, None), tuned=True, **kw) -> Candidate:
    fields = dict(name=name, batch_size=256, lr=0.3, momentum=0.9, optimizer=None,
                  tuned=tuned, trial_number=3, study_value=1.1, runs=runs)
    fields.update(kw)
    return Candidate(**fields)


def result(best=None) -> TuneResult:
    best = best or candidate()
    ref = candidate(name="reference recipe", tuned=False, batch_size=100, lr=0.01,
                    optimizer="adam", runs=(3.0, 3.5, 4.0), trial_number=None)
    return TuneResult(workload="mnist1d-cnn", target=0.9, device="cpu", best=best,
                      candidates=(best, ref), prior={"max_batch_size": 3200, "b_sat": None},
                      study={"name": "s", "storage": "postgresql://u:***@h/db", "trials": {}},
                      tuning_seconds=12.5, created_at="2026-11-22T00:00:00+0000")


def test_candidate_median_counts_misses_as_infinitely_slow():
    assert candidate(runs=(1.0, 2.0, None)).median() == 2.0
    assert candidate(runs=(1.0, None, None)).median() is None
    assert candidate(runs=()).median() is None
    assert candidate(runs=(1.0, None)).reached_share() == 0.5


def test_json_has_the_schema_fields_and_is_strict():
    data = json.loads(result().render("json"))
    assert data["schema_version"] == 1
    assert (data["batch_size"], data["lr"], data["momentum"]) == (256, 0.3, 0.9)
    assert data["expected_time_to_target_s"] == 2.0
    assert data["spread"] == {"min": 1.0, "max": 2.0, "runs": 3, "reached": 2}
    assert [c["name"] for c in data["candidates"]] == ["trial 3", "reference recipe"]
    assert data["candidates"][1]["median_s"] == 3.5
    assert "***" in data["study"]["storage"]


def test_yaml_parses_to_the_same_data():
    yaml = pytest.importorskip("yaml")
    r = result()
    assert yaml.safe_load(r.render("yaml")) == json.loads(r.render("json"))


def test_env_format_is_shell_assignments():
    lines = result().render("env").splitlines()
    assert lines == ["AUTOBATCH_BATCH_SIZE=256", "AUTOBATCH_LR=0.3", "AUTOBATCH_MOMENTUM=0.9",
                     "AUTOBATCH_OPTIMIZER=", "AUTOBATCH_TIME_TO_TARGET_S=2.0"]


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


def test_recommendation_is_the_best_median_among_reliable_tuned_candidates():
    from autobatch.verify import recommendation

    fast_but_flaky = candidate(name="a", runs=(0.5, None))  # median: inf
    steady = candidate(name="b", runs=(1.0, 1.2, 1.1))
    slower = candidate(name="c", runs=(2.0, 2.0, 2.0))
    reference = candidate(name="ref", tuned=False, runs=(0.1, 0.1, 0.1))
    assert recommendation([fast_but_flaky, steady, slower, reference]) is steady
    # a better median that missed the target once loses to one that always reached it
    mostly = candidate(name="d", runs=(0.6, 0.7, None))
    assert recommendation([mostly, slower]) is slower
    assert recommendation([mostly, fast_but_flaky]) is mostly
    # nothing re-measured (verification skipped): the study's best, listed first
    assert recommendation([candidate(name="x", runs=()), reference]).name == "x"


def test_a_recommendation_that_mostly_missed_the_target_is_flagged():
    from autobatch.verify import unreliable

    assert unreliable(candidate(runs=(1.0, 2.0, None))) is None  # reached 2 of 3
    assert unreliable(candidate(runs=())) is None  # not re-measured (--verify 0)
    assert "only 1 of its 3 re-runs" in unreliable(candidate(runs=(1.0, None, None)))
