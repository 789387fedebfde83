"""autobatch report: a self-contained HTML page from a real (small) study (studies.py)."""

from __future__ import annotations

import html
import os
import re

import optuna
import pytest
from typer.testing import CliRunner

import autobatch.keys as keys
from autobatch.errors import ConfigError
from autobatch.report import figures, load_study, write_report
from autobatch.report.canvas import figure
from autobatch.report.dashboard import publish
from autobatch.report.figures import lr_schedule, resolved_schedule
from autobatch_cli.main import app
from tests.report.studies import STUDY, build_study


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    url, study, result = build_study(folder)
    publish(study, result)
    return url, study, result, folder


def test_report_is_self_contained_with_every_section(published):
    url, study, result, folder = published
    out = write_report(url, folder / "report.html")
    page = out.read_text()
    for heading in ("Recommendation", "Time to target vs batch size", "Learning rate x batch size",
                    "Validation metric vs training time", "Throughput profile",
                    "Recommended LR schedule", "Memory model", "Trials"):
        assert f"<h2>{heading}</h2>" in page
    assert page.count('src="data:image/png;base64,') == 6
    # nothing to fetch: no scripts, links or remote sources
    assert not re.search(r"<script|<link|src=\"http|href=\"http|url\(", page)
    best = result.best.hparams
    assert f"batch {best.batch_size}, LR {best.lr:.4g}" in page
    assert "as fast as the reference recipe" in page
    for trial in study.trials:
        assert f"<td>{trial.number}</td><td>{trial.state.name.lower()}</td>" in page
    pruned = [t.user_attrs["prune_reason"] for t in study.trials if "prune_reason" in t.user_attrs]
    assert all(reason in page for reason in pruned)
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_the_recommended_schedule_is_resolved_from_the_result_and_drawn():
    rec = {"lr": 0.2, "batch_size": 64, "schedule": {
        "name": "wsd", "warmup": "5%", "horizon": "10epochs", "cooldown": 0.2,
        "warmup_steps": 25, "horizon_steps": 500, "cooldown_steps": 100}}
    schedule = resolved_schedule(rec)
    assert (schedule.warmup_steps, schedule.horizon_steps, schedule.cooldown_steps) == (
        25, 500, 100)
    assert schedule.lr_at(0) == pytest.approx(1 / 25) and schedule.lr_at(399) == 1.0
    assert schedule.lr_at(500) == 0.0
    assert lr_schedule(rec, schedule).startswith(b"\x89PNG")
    # a study's best trial alone (no result file) has no steps per epoch to resolve with
    assert resolved_schedule({"lr": 0.2, "schedule": {"name": "cosine", "warmup": "5%"}}) is None


def test_report_picks_the_only_study_and_lists_names_otherwise(published, tmp_path):
    url, *_ = published
    assert load_study(url, None).study_name == STUDY
    other = f"sqlite:///{tmp_path / 'two.db'}"
    for name in ("alpha", "beta"):
        optuna.create_study(storage=other, study_name=name)
    with pytest.raises(ConfigError, match="holds 2 studies \\(alpha, beta\\).*--study-name"):
        load_study(other, None)
    with pytest.raises(ConfigError, match="no study named 'gamma'.*alpha, beta"):
        load_study(other, "gamma")
    with pytest.raises(ConfigError, match="no study database"):
        load_study(f"sqlite:///{tmp_path / 'missing.db'}", None)


def test_report_without_verification_falls_back_to_the_best_trial(published, tmp_path):
    url, study, *_ = published
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    optuna.copy_study(from_study_name=STUDY, from_storage=url, to_storage=copy)
    optuna.load_study(study_name=STUDY, storage=copy).set_user_attr(keys.RESULT, None)
    page = write_report(copy, tmp_path / "r.html").read_text()
    assert "one study trial, not re-measured" in page
    assert "no reference recipe was measured" in page


def test_cli_report_writes_atomically_and_exits_2_on_errors(published, tmp_path, monkeypatch):
    url, *_ = published
    monkeypatch.setenv("AUTOBATCH_STORAGE", url)
    out = tmp_path / "cli.html"
    ok = CliRunner().invoke(app, ["report", "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    assert str(out) in ok.stdout and out.read_text().startswith("<!DOCTYPE html>")
    bad = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "no" / "r.html")])
    assert bad.exit_code == 2 and "--out folder" in bad.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["cli.html"]  # no temp file left


def test_report_renders_in_chromium(published, chromium, artifacts):
    url, study, result, folder = published
    out = write_report(url, folder / "report.html")
    shot = artifacts / "report.png"
    dom = chromium(f"file://{out}", "--dump-dom", f"--screenshot={shot}",
                   "--window-size=1200,5600", "--hide-scrollbars",
                   f"--user-data-dir={folder / 'chromium'}")
    assert STUDY in dom and "time_to_target_s" in dom and "reference recipe" in dom
    assert shot.stat().st_size > 50_000  # a rendered page with pictures, not a blank one
    # what the recommendation card and table say, as the browser renders them
    data = result.to_dict()
    assert f"{data['expected_time_to_target_s']:.3g} s to the target (median of 2 " \
           "fresh-seed runs, 50% interval [" in dom
    assert "Verdict: " in dom and html.escape(data["verdict_reason"]) in dom
    assert "x, won 2/2</td>" in dom and "<td>reference</td>" in dom  # speed vs reference
    assert "<td>0/0</td>" not in dom and "1 runs" not in dom


def test_the_recommended_star_is_at_the_re_measured_median(published, monkeypatch):
    _, study, result, _ = published
    rec = result.to_dict()
    drawn = {}

    def capture(draw, size, dpi):
        with figure(size) as fig:
            draw(fig)
            drawn.update({line.get_label(): list(zip(line.get_xdata(), line.get_ydata()))
                          for line in fig.axes[0].get_lines()})
        return b""

    monkeypatch.setattr(figures, "png", capture)
    figures.time_vs_batch(study.trials, rec, None)
    label, points = next((k, v) for k, v in drawn.items() if k.startswith("recommended"))
    assert points == [(rec["batch_size"], rec["expected_time_to_target_s"])]
    assert label == f"recommended: trial {result.best.trial_number} (median of 2 fresh-seed runs)"
    assert rec["expected_time_to_target_s"] != result.best.study_value  # not its study run
