"""`autobatch profile`: its options and what it prints."""

import json
import re

import pytest
from typer.testing import CliRunner

from autobatch import ConfigError, ProfileResult
from autobatch.measure.step_fit import find_knee, fit_step_time
from autobatch.measure.throughput import NOISE_DRAWS
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
    # The fit and the knee are those of the rows printed.
    fitted = [r for r in payload["rows"] if r["fits"]]
    sizes = [r["batch_size"] for r in fitted]
    fit = fit_step_time(sizes, [r["iter_s"] for r in fitted])
    assert (payload["alpha"], payload["beta"]) == (pytest.approx(fit.alpha),
                                                   pytest.approx(fit.beta))
    assert payload["knee"] == find_knee(sizes, [r["samples_per_s"] for r in fitted], 0.10)
    noise = payload["noise"]  # 128 training samples: b_big at most a quarter of them
    assert (noise["draws"], noise["b_small"], noise["b_big"]) == (NOISE_DRAWS, 2, 32)
    # --save writes the profile --json prints.
    assert ProfileResult.load(tmp_path / "p.json").to_dict() == payload


def test_cli_profile_table_lists_each_size_and_the_fit():
    result = runner.invoke(app, ["profile", *GOOD, "--batch-sizes", "8,16,256", "--no-noise"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    # A row per size (\W: the table's borders): times where it ran, the reason where not.
    for size in (8, 16):
        assert re.search(rf"^\W+{size}\W+\d+\.\d+\W", out, re.M), out
    assert re.search(r"^\W+256\W+no fit: larger", out, re.M), out  # the reason may wrap
    knee = re.search(r"^knee\s+(\d+) ", out, re.M)
    assert knee and re.search(rf"^\W+{knee[1]}\W.*knee", out, re.M), out
    assert "t(B) =" in out
    assert "B_simple" not in out


def test_cli_profile_retakes_a_profile_failing_its_bar_then_warns_on_stderr(monkeypatch):
    from autobatch_cli import profile as command
    from tests.measure.test_trust import MID, profiler

    measure = profiler([MID, MID])
    calls = []
    monkeypatch.setattr(command, "run_profile", lambda *a, **k: calls.append(1) or measure())
    result = runner.invoke(app, ["profile", *GOOD, "--json"])
    assert result.exit_code == 0, result.output
    assert len(calls) == 2
    assert ("warning: the throughput profile failed its quality bar twice (the machine "
            "may be busy): step-time fit error 35%") in " ".join(result.stderr.split())
    json.loads(result.stdout)  # the warning stays off stdout


@pytest.mark.parametrize(("values", "expected"), [
    ((40.0, 20.0, 90.0), "B_simple   40  90% interval [20, 90]  (16 draws at batch 2 and 32)"),
    ((40.0, 20.0, None), "B_simple   40  90% interval [20, unbounded)  (16 draws"),
    ((None, None, None), "B_simple   not resolved: at these batch sizes the gradient noise"),
])
def test_noise_line_shows_the_interval_or_why_there_is_none(values, expected):
    from dataclasses import fields

    from autobatch.measure.noise import NoiseEstimate
    from autobatch_cli.profile import noise_line

    known = dict(zip(("b_simple", "low", "high"), values, strict=True))
    known.update(level=0.9, draws=16, b_small=2, b_big=32, population=None)
    noise = NoiseEstimate(**{f.name: known.get(f.name, 0.0) for f in fields(NoiseEstimate)})
    assert noise_line(noise).startswith(expected)
