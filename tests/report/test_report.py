"""autobatch report: a self-contained HTML page from a real (small) study.

The study is real: Optuna trials of autobatch.search.study.Objective on the tiny workload.
The prior is hand-made (a GPU-like profile and a probe with one OOM) so the test does
not spend 15 s probing and profiling; verification runs are invented from the trials.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import optuna
import pytest
import torch
from typer.testing import CliRunner

import autobatch.keys as keys
from autobatch.device import DeviceInfo
from autobatch.errors import ConfigError
from autobatch.hyperparams import Hyperparams
from autobatch.measure.noise import NoiseEstimate
from autobatch.measure.probe import Attempt, ProbeResult
from autobatch.measure.throughput import ProfileResult, ProfileRow
from autobatch.report.dashboard import publish
from autobatch.report.page import load_study, write_report
from autobatch.result import StudyInfo, TuneResult
from autobatch.search.objective import Objective
from autobatch.search.prior import Prior, seed_trials
from autobatch.search.pruning import pruner
from autobatch.search.runners import InProcessRunner
from autobatch.search.space import SearchSpace
from autobatch.search.study import (
    METRIC_NAME,
    sampler,
    summarize,
)
from autobatch.verify import Candidate
from autobatch_cli.main import app
from tests.conftest import tiny_workload

STUDY = "tiny-target0.95"
TARGET = 0.95
GIB = 1024**3
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium (apt-get install -y chromium); .ci/run installs it")


def fake_prior() -> Prior:
    """A plausible GPU prior: t(B) = 4 ms + 20 us x B, B_simple 40, OOM at 1024."""
    alpha, beta = 0.004, 2e-5
    rows = tuple(ProfileRow(batch_size=b, fits=True, iter_s=alpha + beta * b,
                            iter_s_min=0.95 * (alpha + beta * b),
                            iter_s_max=1.1 * (alpha + beta * b),
                            samples_per_s=b / (alpha + beta * b), steps_per_epoch=256 // b or 1,
                            epoch_s=256 / b * (alpha + beta * b), repeats=5, steps_per_repeat=20)
                 for b in (8, 16, 32, 64, 128, 256, 512))
    noise = NoiseEstimate(b_simple=40.0, low=22.0, high=85.0, level=0.9, draws=64, b_small=4,
                          b_big=64, population=256, g2=1e-5, trace_sigma=4e-4,
                          warmup_steps=200, seconds=1.0)
    profile = ProfileResult(workload="tiny", device="cuda:0 (test GPU)", train_size=256,
                            max_batch=512, rows=rows, alpha=alpha, beta=beta,
                            b_sat=alpha / beta, fit_error=0.03, knee=128, knee_gain=0.1,
                            eval_pass_s=0.001, noise=noise, seconds=4.2,
                            torch_version=torch.__version__, threads=2)
    fixed, per_sample = 1.0 * GIB, 8 * 1024**2
    attempts = tuple(Attempt(batch_size=b, outcome="fit", peak_bytes=int(fixed + per_sample * b),
                             train_steps=2, seconds=0.2) for b in (1, 64, 512)) + (
        Attempt(batch_size=1024, outcome="oom", peak_bytes=None, train_steps=1, seconds=0.1),)
    probe = ProbeResult(
        workload="tiny", fingerprint="0" * 16,
        device=DeviceInfo(type="cuda", index=0, name="Test GPU", total_bytes=8 * GIB,
                          free_bytes=8 * GIB),
        dtype="float32", max_batch_size=512, limited_by="memory", min_batch=1, max_batch=4096,
        headroom=0.1, memory_limit_bytes=None, usable_bytes=8 * GIB,
        budget_bytes=int(7.2 * GIB), peak_bytes=int(fixed + per_sample * 512),
        fixed_bytes=fixed, bytes_per_sample=per_sample, fit_r2=1.0, fit_max_rel_error=0.0,
        attempts=attempts, train_steps=7, seconds=0.7, isolation="subprocess",
        torch_version=torch.__version__, created_at="2026-01-01T00:00:00Z")
    space = SearchSpace(batch_sizes=(16, 32, 64, 128, 256), anchor_batch=64,
                        lr_range=(0.05, 3.0))
    return Prior(probe=probe, profile=profile, lr_range=None, b_star=89.0, space=space,
                 bucket_base=0.005)


def build_study(folder: Path, n_trials: int = 10) -> tuple[str, optuna.Study, TuneResult]:
    """A real study on the tiny workload with a fake prior, and a TuneResult for it."""
    url = f"sqlite:///{folder / 'study.db'}"
    study = optuna.create_study(storage=url, study_name=STUDY, direction="minimize",
                                sampler=sampler(0), pruner=pruner())
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        study.set_metric_names([METRIC_NAME])
    prior = fake_prior()
    study.set_user_attr(keys.PRIOR, prior.to_dict())
    study.set_user_attr(keys.CONTRACT, {"workload": "tiny", "target": TARGET})
    for params in seed_trials(prior):
        study.enqueue_trial(params)
    objective = Objective(runner=InProcessRunner(tiny_workload(), torch.device("cpu")),
                          space=prior.space, target=TARGET, trial_budget_s=1.0,
                          bucket_base=prior.bucket_base)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=n_trials)
    done = sorted((t for t in study.trials if t.user_attrs.get("target_reached")),
                  key=lambda t: t.value)
    assert done, "the tiny workload should reach the target"
    tuned = [Candidate.from_trial(t) for t in done[:2]]
    # Invented verification runs: the best 20% slower than in the study, the reference
    # recipe (batch 16, a small LR) three times slower still.
    tuned = [c.with_run(c.study_value * 1.2).with_run(c.study_value * 1.3) for c in tuned]
    ref = Candidate(name="reference recipe", hparams=Hyperparams(batch_size=16, lr=0.05),
                    tuned=False, runs=(done[0].value * 4, None, done[0].value * 3.5))
    result = TuneResult(
        workload="tiny", target=TARGET, device="cpu", best=tuned[0],
        candidates=(*tuned, ref), prior={"max_batch_size": 512},
        study=StudyInfo(name=STUDY, storage=url, trials=summarize(study)), tuning_seconds=9.0)
    return url, study, result


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
                    "Memory model", "Trials"):
        assert f"<h2>{heading}</h2>" in page
    assert page.count('src="data:image/png;base64,') == 5
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


@needs_chromium
def test_report_renders_in_chromium(published):
    url, study, result, folder = published
    out = write_report(url, folder / "report.html")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    dom = chromium(f"file://{out}", "--dump-dom", f"--screenshot={shot}",
                   "--window-size=1200,5600", "--hide-scrollbars",
                   f"--user-data-dir={folder / 'chromium'}")
    assert STUDY in dom and "time_to_target_s" in dom and "reference recipe" in dom
    assert shot.stat().st_size > 50_000  # a rendered page with pictures, not a blank one


def chromium(url: str, *flags: str, timeout: float = 30) -> str:
    """Run headless Chromium once; its stdout (the DOM with --dump-dom)."""
    run = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-quic", *flags, url],
        capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout
