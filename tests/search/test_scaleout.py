"""Many workers on one study: real PostgreSQL, real processes, real signals."""

import logging
import os
import re
import signal
import subprocess
import time
import uuid

import optuna
import pytest
from optuna.artifacts import get_all_artifact_meta
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState

from autobatch import ConfigError
from autobatch.config import TuneConfig
from autobatch.search.worker_processes import spawn_workers, worker_command
from autobatch.search.workers import run_trials
from autobatch.storage import StorageError, mask_url, open_storage
from tests.conftest import FIXTURES, autobatch

SECRET = "p@ss%w{o}r/d"  # trust auth ignores it; it must never be printed
QUOTED_SECRET = "p%40ss%25w%7Bo%7Dr%2Fd"


def with_password(url: str) -> str:
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{QUOTED_SECRET}@")


@pytest.fixture
def study_name(pg_url):
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    try:
        optuna.delete_study(study_name=name, storage=pg_url)
    except KeyError:
        pass


def states(url: str, name: str) -> dict[str, int]:
    study = optuna.load_study(study_name=name, storage=url)
    out: dict[str, int] = {}
    for trial in study.trials:
        out[trial.state.name] = out.get(trial.state.name, 0) + 1
    return out


TUNE = ["tune", "--workload", "user_workloads:good", "--app-dir", str(FIXTURES),
        "--target", "0.95", "--verify", "1", "--no-compare"]


@pytest.mark.slow
def test_two_workers_finish_exactly_the_budget_and_hide_the_password(pg_url, study_name):
    url = with_password(pg_url)
    proc = autobatch(*TUNE, "--n-trials", "8", "--workers", "2", "--study-name", study_name,
                     env={"AUTOBATCH_STORAGE": url})
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    counts = states(pg_url, study_name)
    assert counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) == 8
    assert "RUNNING" not in counts
    # one progress line per finished trial, from the worker that ran it
    line = r"^\[ *[\d.]+s\] trial \d+ +(complete|pruned) .*\(worker \d+\)$"
    assert len(re.findall(line, err, re.M)) == 8
    assert SECRET not in out + err and QUOTED_SECRET not in out + err
    assert "postgres:***@127.0.0.1" in out + err
    study = optuna.load_study(study_name=study_name, storage=pg_url)
    assert QUOTED_SECRET not in str(study.user_attrs) and SECRET not in str(study.user_attrs)


@pytest.mark.slow
def test_workers_that_all_fail_fail_the_tune_with_their_errors_shown(pg_url, study_name):
    args = [a if a != "user_workloads:good" else "user_workloads:broken_in_workers"
            for a in TUNE]
    proc = autobatch(*args, "--n-trials", "4", "--workers", "2", "--study-name", study_name,
                     "--storage", pg_url)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 1, err
    assert "a bug that only shows in worker processes" in err  # the workers' own tracebacks
    assert "every worker failed (exit codes [1, 1])" in err
    assert "RUNNING" not in states(pg_url, study_name)


def start_and_wait_for_a_trial(pg_url: str, study_name: str):
    """`tune --workers 2` in a process group of its own, once a trial has finished."""
    proc = autobatch(*TUNE, "--n-trials", "200", "--workers", "2", "--trial-budget", "2s",
                     "--target", "0.999", "--study-name", study_name, "--storage", pg_url,
                     start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        study = optuna.load_study(study_name=study_name, storage=pg_url) \
            if study_name in optuna.get_all_study_names(pg_url) else None
        if study and any(t.state.is_finished() for t in study.trials):
            break
        time.sleep(0.5)
    return proc


def workers_of(study_name: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", f"worker --study-name {study_name}"],
                           capture_output=True, text=True)
    return found.stdout.split()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.slow
def test_a_signal_to_the_process_group_stops_the_tune_and_every_worker(pg_url, study_name,
                                                                      sig, code):
    """Ctrl-C in a terminal reaches the parent and its workers at once: all of them stop
    at a safe point, none keeps running trials, nothing is left RUNNING."""
    proc = start_and_wait_for_a_trial(pg_url, study_name)
    os.killpg(proc.pid, sig)
    started = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert time.monotonic() - started < 30, err
    assert "Traceback" not in err, err
    counts = states(pg_url, study_name)
    assert "RUNNING" not in counts and sum(counts.values()) < 200, counts


@pytest.mark.slow
def test_workers_end_with_a_tune_killed_by_sigkill(pg_url, study_name):
    proc = start_and_wait_for_a_trial(pg_url, study_name)
    assert workers_of(study_name)
    proc.kill()
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 15  # the end of the current step, not of the study
    while workers_of(study_name) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not workers_of(study_name)
    assert "RUNNING" not in states(pg_url, study_name)  # each closed its trial on the way


@pytest.mark.slow
def test_rerun_resumes_the_same_postgres_study(pg_url, study_name, tmp_path):
    first = autobatch(*TUNE, "--n-trials", "3", "--storage", pg_url, "--study-name",
                      study_name)
    assert first.wait(timeout=240) == 0, first.stderr.read()
    # the rerun carries a password in the URL's query, the other form libpq accepts
    second = autobatch(*TUNE, "--n-trials", "5", "--study-name", study_name,
                       "--artifacts", str(tmp_path / "artifacts"), "--output",
                       str(tmp_path / "best.json"),
                       env={"AUTOBATCH_STORAGE": f"{pg_url}?password={QUOTED_SECRET}"})
    out, err = second.communicate(timeout=240)
    assert second.returncode == 0, err
    assert "resuming study" in err
    counts = states(pg_url, study_name)
    assert counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) == 5
    # a server has no "beside": the dashboard's artifacts went where --artifacts said
    study = optuna.load_study(study_name=study_name, storage=pg_url)
    names = {meta.filename for meta in get_all_artifact_meta(study)}
    assert names == {"best.json", "probe.json", "profile.png"}
    assert len(list((tmp_path / "artifacts").iterdir())) == 3
    files = [p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*.*")]
    notes = str(study._storage.get_study_system_attrs(study._study_id))  # the dashboard note
    assert "password=***" in notes
    written = [out, err, str(study.user_attrs), notes, *files]
    assert "password=***" in err and "best.json" in {p.name for p in tmp_path.iterdir()}
    assert not [text for text in written if QUOTED_SECRET in text or SECRET in text]


@pytest.mark.slow
def test_sigkilled_worker_trial_is_failed_and_retried_by_a_survivor(pg_url, study_name):
    heartbeat = {"AUTOBATCH_HEARTBEAT_S": "1", "AUTOBATCH_STORAGE": pg_url}
    setup = autobatch("tune", "--workload", "user_workloads:slow", "--app-dir", str(FIXTURES),
                      "--target", "0.99", "--n-trials", "4", "--trial-budget", "1.5s",
                      "--batch-size", "16", "--lr", "0.05", "--momentum", "0.9",
                      "--workers", "0", "--study-name", study_name, env=heartbeat)
    _, err = setup.communicate(timeout=240)
    assert setup.returncode == 0, err
    victim = autobatch("worker", "--study-name", study_name, env=heartbeat)
    deadline = time.time() + 60
    while time.time() < deadline and states(pg_url, study_name).get("RUNNING", 0) == 0:
        time.sleep(0.2)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert states(pg_url, study_name).get("RUNNING") == 1  # the zombie the kill left
    survivor = autobatch("worker", "--study-name", study_name, env=heartbeat)
    _, err = survivor.communicate(timeout=240)
    assert survivor.returncode == 0, err
    study = optuna.load_study(study_name=study_name, storage=pg_url)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 1  # the killed worker's trial
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert retried and retried[0].state.is_finished()
    counts = states(pg_url, study_name)
    assert counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) == 4
    assert "RUNNING" not in counts


def test_a_trial_whose_worker_died_before_its_first_heartbeat_is_failed_and_retried(
        pg_url, study_name, monkeypatch):
    monkeypatch.setenv("AUTOBATCH_HEARTBEAT_S", "1")  # grace period: 3 s
    storage = open_storage(pg_url)
    study = optuna.create_study(study_name=study_name, storage=storage)
    orphan = study.ask()  # RUNNING, and no heartbeat ever: its worker "died" here
    alive = study.ask()
    storage.record_heartbeat(alive._trial_id)
    fail_stale_trials(study)
    assert states(pg_url, study_name) == {"RUNNING": 2}  # silent, but not for long yet
    time.sleep(3.5)
    storage.record_heartbeat(alive._trial_id)
    fail_stale_trials(study)
    trials = study.get_trials()
    assert trials[orphan.number].state == TrialState.FAIL
    assert trials[alive.number].state == TrialState.RUNNING
    assert [t.system_attrs.get("failed_trial") for t in trials[2:]] == [orphan.number]
    assert trials[2].state == TrialState.WAITING


def test_a_trial_started_past_the_budget_by_a_concurrent_worker_is_failed():
    from autobatch.search.workers import SurplusTrial, claim

    study = optuna.create_study()
    study.tell(study.ask(), 1.0)
    first, second = study.ask(), study.ask()  # two workers saw one trial left
    claim(study, first, n_trials=2)  # the lower number keeps its place
    with pytest.raises(SurplusTrial, match="last of the 2-trial budget"):
        claim(study, second, n_trials=2)
    assert second.user_attrs["fail_reason"] == "over_budget"


def test_a_trial_lost_to_a_budget_race_is_not_logged_with_a_traceback():
    from autobatch.search.workers import SurplusTrial

    def surplus(trial):
        raise SurplusTrial("another worker took the last of the 2-trial budget")

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("optuna.study._optimize")  # where Optuna logs failed trials
    logger.addHandler(handler)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # another test may have quietened it
    try:
        study = optuna.create_study()
        study.optimize(surplus, n_trials=1, catch=(SurplusTrial,))
        study.optimize(lambda trial: 1 / 0, n_trials=1, catch=(ZeroDivisionError,))
    finally:
        logger.removeHandler(handler)
        optuna.logging.set_verbosity(verbosity)
    assert study.trials[0].state == TrialState.FAIL  # the trial line reports it
    assert [r.getMessage().split(" because")[0] for r in records if r.exc_info] == [
        "Trial 1 failed with parameters: {}"]  # a real error keeps its traceback
    assert not [r for r in records if r.getMessage().startswith("Trial 0")]


def test_sqlite_refuses_several_workers(tmp_path):
    with pytest.raises(ConfigError, match="cannot share SQLite.*PostgreSQL.*journal"):
        TuneConfig(target=0.9, workers=2, storage=f"sqlite:///{tmp_path}/s.db")
    proc = autobatch(*TUNE, "--workers", "2", "--storage", f"sqlite:///{tmp_path}/s.db")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "PostgreSQL" in err
    assert not (tmp_path / "s.db").exists()  # nothing written before the refusal


def test_sqlite_refuses_a_study_for_worker_processes_and_the_worker_command(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    with pytest.raises(ConfigError, match=r"--workers 0\) cannot share SQLite"):
        TuneConfig(target=0.9, workers=0, storage=url)
    proc = autobatch("worker", "--study-name", "s", "--storage", url)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "`autobatch worker` cannot share SQLite" in err
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize(("url", "message"), [
    ("postgresql+pg8000://postgres:{pw}@127.0.0.1/test", "missing pg8000"),
    ("postgresql://postgres:{pw}@127.0.0.1:1/test", "cannot reach the postgresql server at "
                                                    "127.0.0.1:1"),
])
def test_storage_errors_are_one_line_with_the_fix_and_a_masked_url(url, message):
    url = url.format(pw=QUOTED_SECRET)
    with pytest.raises(StorageError, match=message) as info:
        open_storage(url)
    assert QUOTED_SECRET not in str(info.value) and "***" in str(info.value)
    proc = autobatch(*TUNE, "--storage", url)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert message in err and QUOTED_SECRET not in err and SECRET not in err
    assert len(err.strip().splitlines()) == 1


def test_special_characters_in_passwords_work(pg_url):
    url = with_password(pg_url)
    assert mask_url(url) == "postgresql://postgres:***@127.0.0.1:5432/test"
    storage = open_storage(url)
    assert isinstance(optuna.get_all_study_names(storage), list)


def test_worker_commands_keep_the_url_off_and_give_each_worker_one_device():
    for i in range(4):
        cmd, env = worker_command(i, "s", deadline=12.5, devices=["0", "1"])
        assert cmd[-6:] == ["--study-name", "s", "--device", "cuda", "--deadline", "12.5"]
        assert env == {"CUDA_VISIBLE_DEVICES": str(i % 2)}
    cmd, env = worker_command(0, "s", deadline=float("inf"))
    assert cmd[-2:] == ["--device", "auto"] and env == {}
    cmd, _ = worker_command(0, "s", deadline=float("inf"), started=100.5)
    assert cmd[-2:] == ["--started", "100.5"]  # the tune's clock, for the [t s] prefix
    cmd, _ = worker_command(0, "s", deadline=995.0, verify_from=700.0)
    assert cmd[-4:] == ["--deadline", "995.0", "--verify-from", "700.0"]


def test_worker_commands_give_each_data_parallel_worker_its_ranks_devices():
    envs = [worker_command(i, "s", deadline=12.5, devices=["0", "1", "2", "3"],
                           nproc_per_trial=2) for i in range(2)]
    assert [env for _, env in envs] == [{"CUDA_VISIBLE_DEVICES": "0,1"},
                                        {"CUDA_VISIBLE_DEVICES": "2,3"}]
    assert all(cmd[cmd.index("--nproc-per-trial") + 1] == "2" for cmd, _ in envs)


class Numbered:
    """An objective for run_trials: trial i returns float(i)."""

    def evaluate(self, trial):
        return float(trial.number)

    def before_trial(self, study):
        pass  # no rungs: nothing to promote


def test_run_trials_says_why_it_stopped():
    study = optuna.create_study()
    assert run_trials(study, Numbered(), n_trials=2, deadline=time.time() + 60,
                      exclusive=True) == "the study's 2-trial budget is used up"
    assert run_trials(study, Numbered(), n_trials=None, deadline=time.time() - 1,
                      exclusive=True) == "the time for trials is spent (deadline)"
    assert len(study.trials) == 2


@pytest.mark.slow
def test_a_worker_prefixes_its_lines_with_the_clock_and_says_why_it_stopped(tmp_path):
    url = f"journal:///{tmp_path}/study.log"
    env = {"AUTOBATCH_CACHE_DIR": str(tmp_path / "cache")}
    setup = autobatch(*TUNE[:-3], "--n-trials", "2", "--workers", "0", "--storage", url,
                      "--study-name", "s", env=env)
    assert setup.wait(timeout=120) == 0, setup.stderr.read()
    worker = autobatch("worker", "--study-name", "s", env={**env, "AUTOBATCH_STORAGE": url})
    out, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, err
    lines = err.splitlines()
    assert len([line for line in lines if re.match(r"\[ *\d+\.\ds\] trial \d complete", line)]) == 2
    assert re.match(rf"\[ *\d+\.\ds\] worker {worker.pid} stopped: the study's 2-trial budget "
                    r"is used up$", lines[-1]), err
    assert "Warning" not in err  # no runpy or other start-up warning


def test_worker_processes_get_the_url_from_the_environment(pg_url, capfd):
    # real workers, on a study that does not exist: each reads the URL (with its
    # password) from the environment and names it, masked, in its one-line error
    url = with_password(pg_url)
    polls = []
    assert spawn_workers(2, url, "no-such-study", deadline=float("inf"),
                         on_poll=lambda: polls.append(time.monotonic())) == [2, 2]
    assert polls  # the tune's watch looked while they ran
    err = capfd.readouterr().err
    assert err.count(f"no study 'no-such-study' in {mask_url(url)}") == 2
    assert QUOTED_SECRET not in err and SECRET not in err
