"""The study note, artifacts, and `autobatch dashboard` in a real headless Chromium."""

from __future__ import annotations

import html
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from optuna.artifacts import get_all_artifact_meta
from optuna_dashboard import get_note
from typer.testing import CliRunner

import autobatch.keys as keys
from autobatch.report.dashboard import artifact_folder, is_loopback, publish
from autobatch.report.recommendation import verdict_line
from autobatch_cli.main import app
from tests.report.studies import STUDY, build_study

SECRET = "p@ss%w{o}r/d"  # trust auth ignores it; it must never be shown
QUOTED_SECRET = "p%40ss%25w%7Bo%7Dr%2Fd"


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    # "S3cretPath" stands in for a password: the URL must reach no command line.
    folder = tmp_path_factory.mktemp("S3cretPath")
    url, study, result = build_study(folder, n_trials=8)
    return url, study, result, publish(study, result)


def test_publish_writes_the_note_the_result_and_three_artifacts(published):
    url, study, result, folder = published
    assert folder == Path(url.removeprefix("sqlite:///")).with_name("study-artifacts")
    note = get_note(study)
    assert note.startswith("## autobatch: tiny to 0.95 on cpu")
    assert f"batch {result.best.hparams.batch_size}, LR {result.best.hparams.lr:.4g}" in note
    assert "as fast as the reference recipe" in note and "### Memory probe" in note
    assert "milliseconds of training" in note
    assert study.user_attrs[keys.RESULT] == result.to_dict()
    # the time to expect is the re-measured one, told apart from the study's single run
    median = result.best.median()
    assert f"{median:.3g} s to the target (median of 2 fresh-seed runs" in note
    best = min((t for t in study.trials if t.user_attrs.get("target_reached")),
               key=lambda t: t.value)
    assert f"*Best Trial* (number={best.number}, {best.value:.4g}) is the study's fastest " \
           "single run" in note
    verdict = verdict_line(result.to_dict())
    assert result.to_dict()["verdict_reason"] in verdict and f"**Verdict**: {verdict}." in note
    # the search coordinates explained, and the fastest trials' recipes listed
    assert "`lr0` is the LR at batch 64" in note and "### Fastest trials" in note
    assert f"| {best.number} | {best.user_attrs['batch_size']} | {best.user_attrs['lr']:.4g} |" \
        in note
    # readable beside the JSON documents
    assert study.user_attrs[keys.RECOMMENDATION_TEXT].startswith(
        f"batch {result.best.hparams.batch_size}, LR {result.best.hparams.lr:.4g}")
    assert study.user_attrs[keys.VERDICT_TEXT] == verdict
    metas = {m.filename: m for m in get_all_artifact_meta(study)}
    assert set(metas) == {"best.json", "probe.json", "profile.png"}
    saved = json.loads((folder / metas["best.json"].artifact_id).read_text())
    assert saved["batch_size"] == result.best.hparams.batch_size
    assert (folder / metas["profile.png"].artifact_id).read_bytes()[:4] == b"\x89PNG"


def test_publish_again_rewrites_in_place(published):
    url, study, result, folder = published
    later = replace(result, tuning_seconds=99.0)
    publish(study, later)
    metas = get_all_artifact_meta(study)
    assert len(metas) == 3 and len(list(folder.iterdir())) == 3
    best = next(m for m in metas if m.filename == "best.json")
    assert json.loads((folder / best.artifact_id).read_text())["tuning_seconds"] == 99.0
    assert "99 s" in get_note(study)


def test_publish_never_writes_a_password(published, tmp_path):
    _, study, result, _ = published
    leaky = replace(result, study=replace(result.study,
                                          storage=f"postgresql://u:{QUOTED_SECRET}@db/x"))
    assert publish(study, leaky, tmp_path) == tmp_path
    assert "postgresql://u:***@db/x" in get_note(study)
    texts = [get_note(study), json.dumps(study.user_attrs)]
    texts += [p.read_bytes().decode("latin-1") for p in tmp_path.iterdir()]
    assert not any(secret in text for text in texts for secret in (SECRET, QUOTED_SECRET))
    assert artifact_folder(f"postgresql://u:{QUOTED_SECRET}@db/x") is None
    publish(study, result)  # restore for the other tests


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.5", False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_dashboard(url: str, *args: str) -> tuple[subprocess.Popen, int]:
    """`autobatch dashboard` in its own process group, the URL in the environment only."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "autobatch_cli", "dashboard", "--port", str(port), *args],
        env={**os.environ, "AUTOBATCH_STORAGE": url, "NO_COLOR": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    return proc, port


def wait_until_serving(proc: subprocess.Popen, port: int, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dashboard exited {proc.returncode}: {proc.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    pytest.fail("dashboard did not answer in time")


def stop(proc: subprocess.Popen) -> str:
    """SIGTERM the CLI (it forwards to the server); its stderr."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    return err


def process_list() -> str:
    return subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout


def test_dashboard_in_chromium_shows_study_metric_and_note(published, tmp_path, chromium,
                                                           artifacts):
    url, study, result, _ = published
    proc, port = start_dashboard(url)
    try:
        wait_until_serving(proc, port)
        assert "S3cretPath" not in process_list()  # the URL is on no command line
        page = f"http://127.0.0.1:{port}/dashboard/studies/{study._study_id}"
        flags = ("--virtual-time-budget=6000", "--window-size=1400,1800", "--hide-scrollbars")
        dom = chromium(page, "--dump-dom", f"--screenshot={artifacts / 'dashboard.png'}",
                       *flags, f"--user-data-dir={tmp_path / 'a'}")
        note = chromium(f"{page}/note", "--dump-dom",
                        f"--screenshot={artifacts / 'dashboard-note.png'}", *flags,
                        f"--user-data-dir={tmp_path / 'b'}")
    finally:
        err = stop(proc)
    assert STUDY in dom and "time_to_target_s" in dom
    # the readable study attributes, beside the JSON documents
    assert "Recommendation" in dom and html.escape(verdict_line(result.to_dict())) in dom
    assert "autobatch: tiny to 0.95 on cpu" in note and "Memory probe" in note
    assert "Verdict" in note and "Fastest trials of the study" in note
    assert "fresh-seed runs" in note and "Reading the dashboard" in note
    assert f"batch {result.best.hparams.batch_size}, LR {result.best.hparams.lr:.4g}" in note
    assert "at http://127.0.0.1:" in err and "WARNING" not in err


def test_dashboard_warns_before_binding_beyond_loopback(published):
    url, *_ = published
    proc, port = start_dashboard(url, "--host", "0.0.0.0")
    try:
        wait_until_serving(proc, port)
    finally:
        err = stop(proc)
    assert "WARNING: dashboard reachable from other machines" in err
    assert "no authentication" in err
    assert err.index("WARNING") < err.index("Listening on")


def test_dashboard_keeps_a_postgres_password_off_every_command_line(pg_url):
    url = pg_url.replace("postgresql://postgres@", f"postgresql://postgres:{QUOTED_SECRET}@")
    proc, port = start_dashboard(url)
    try:
        wait_until_serving(proc, port)
        listed = process_list()
    finally:
        err = stop(proc)
    assert "autobatch_cli dashboard --port" in listed
    assert QUOTED_SECRET not in listed and SECRET not in listed
    assert "postgres:***@127.0.0.1" in err and QUOTED_SECRET not in err


@pytest.mark.parametrize(("signum", "code", "said"), [(signal.SIGINT, 130, "Ctrl-C"),
                                                       (signal.SIGTERM, 143, "SIGTERM")])
def test_dashboard_exits_130_on_ctrl_c_and_143_on_sigterm(published, signum, code, said):
    url, *_ = published
    proc, port = start_dashboard(url)
    try:
        wait_until_serving(proc, port)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == code, err
    assert err.rstrip().endswith(f"dashboard stopped ({said})"), err
    assert "Warning" not in err  # nothing on start-up a newcomer must decode


def test_dashboard_refuses_a_missing_database(tmp_path):
    run = CliRunner().invoke(app, ["dashboard", "--storage", f"sqlite:///{tmp_path / 'no.db'}"])
    assert run.exit_code == 2 and "no study database" in run.stderr
    assert not (tmp_path / "no.db").exists()
