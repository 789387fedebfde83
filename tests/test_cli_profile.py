"""`autobatch profile`: its options and what it prints."""

import json

import pytest
from typer.testing import CliRunner

from autobatch import ConfigError, ProfileResult
from autobatch_cli.main import app
from autobatch_cli.profile import parse_batch_sizes
from tests.conftest import FIXTURES


@pytest.mark.parametrize("text, expected", [
    ("auto", None), (" AUTO ", None), ("8,16,32", (8, 16, 32)), ("32, 8 ,8,", (8, 32)),
])
def test_parse_batch_sizes_accepts_auto_and_lists(text, expected):
    assert parse_batch_sizes(text) == expected


@pytest.mark.parametrize("text", ["", " ", ",", "8,x", "1.5", "0", "8,-1"])
def test_parse_batch_sizes_rejects_bad_lists_naming_the_option(text):
    with pytest.raises(ConfigError, match="--batch-sizes"):
        parse_batch_sizes(text, name="--batch-sizes")


runner = CliRunner()
GOOD = ["--workload", "user_workloads:good", "--app-dir", str(FIXTURES), "--device", "cpu"]


@pytest.mark.parametrize("value", ["", "8,x", "abc", "0"])
def test_cli_profile_bad_batch_sizes_exit_2_naming_the_option(value):
    result = runner.invoke(app, ["profile", *GOOD, "--batch-sizes", value])
    assert result.exit_code == 2
    assert "--batch-sizes" in result.stderr


def test_cli_profile_json_is_strict_and_complete(tmp_path):
    result = runner.invoke(app, ["profile", *GOOD, "--batch-sizes", "8,16,32,64,512",
                                 "--max-batch", "64", "--json",
                                 "--save", str(tmp_path / "p.json")])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(c))
    assert [r["fits"] for r in payload["rows"]] == [True, True, True, True, False]
    assert payload["alpha"] >= 0 and payload["beta"] >= 0 and payload["knee"] in (8, 16, 32)
    noise = payload["noise"]
    assert noise["draws"] >= 32 and noise["b_small"] < noise["b_big"] <= 64
    assert ProfileResult.load(tmp_path / "p.json").workload == "user-good"


def test_cli_profile_table_lists_each_size_and_the_fit():
    result = runner.invoke(app, ["profile", *GOOD, "--batch-sizes", "8,16,256", "--no-noise"])
    assert result.exit_code == 0, result.output
    assert "no fit" in result.stdout and "training" in result.stdout  # may wrap
    assert "t(B) =" in result.stdout and "knee" in result.stdout
    assert "B_simple" not in result.stdout
