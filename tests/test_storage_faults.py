"""Storage faults: retried while they pass, one line and a documented exit code when they
do not, and never a worse study (finished trials intact, no partial file, no live
trial swept as a zombie)."""

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import event

import autobatch.storage as storage_module
from autobatch.errors import ConfigError, StorageError, StorageFault
from autobatch.faults import retry_seconds
from autobatch.locks import StudyLock
from autobatch.search.workers import run_trials
from autobatch.storage import open_storage
from tests.conftest import FIXTURES, autobatch

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def slow_tune(url, n_trials=3):
    return ["tune", "--workload", "user_workloads:slow", "--app-dir", str(FIXTURES),
            "--target", "0.99", "--n-trials", str(n_trials), "--trial-budget", "2s",
            "--batch-size", "16", "--lr", "0.05", "--momentum", "0.9", "--verify", "0",
            "--storage", url, "--study-name", "s"]


class Evaluations:
    """An objective for run_trials: trial i returns float(i) after `during(trial)`."""

    def __init__(self, during=lambda trial: None):
        self.during = during

    def evaluate(self, trial):
        self.during(trial)
        return float(trial.number)

    def before_trial(self, study):
        pass  # no rungs: nothing to promote


def run(study, objective, n_trials=4):
    run_trials(study, objective, n_trials=n_trials, deadline=time.time() + 60,
               exclusive=True)


# -- transient faults: retried with backoff, then one fault ------------------------------

def locked(db: Path, seconds: float) -> threading.Thread:
    """Another connection holds an exclusive lock on the database for `seconds`."""
    conn = sqlite3.connect(db, check_same_thread=False)
    conn.execute("begin exclusive")

    def release():
        time.sleep(seconds)
        conn.rollback()
        conn.close()

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    return thread


OPERATIONS = {
    "write a study attribute": lambda study: study.set_user_attr("k", 1),
    "start a trial": lambda study: study.ask(),
    "read the trials": lambda study: study.get_trials(),
}


@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_transient_fault_is_retried_until_it_passes(tmp_path, monkeypatch, operation):
    monkeypatch.setattr(storage_module, "SQLITE_TIMEOUT_S", 0.05)
    db = tmp_path / "s.db"
    study = optuna.create_study(study_name="s", storage=open_storage(f"sqlite:///{db}"))
    study.tell(study.ask(), 1.0)
    holder = locked(db, 1.0)
    started = time.monotonic()
    OPERATIONS[operation](study)  # no error: retried until the lock was released
    assert time.monotonic() - started >= 0.9
    holder.join()
    assert study.trials[0].value == 1.0


@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_fault_past_the_retry_window_is_one_line_and_the_storage_stays_lost(
        tmp_path, monkeypatch, operation):
    monkeypatch.setattr(storage_module, "SQLITE_TIMEOUT_S", 0.05)
    monkeypatch.setenv("AUTOBATCH_STORAGE_RETRY_S", "1")
    db = tmp_path / "s.db"
    study = optuna.create_study(study_name="s", storage=open_storage(f"sqlite:///{db}"))
    study.tell(study.ask(), 1.0)
    holder = locked(db, 3.0)
    started = time.monotonic()
    with pytest.raises(StorageFault, match=rf"^lost the study storage {db}: database is "
                       r"locked \(retried for 1 s, \$AUTOBATCH_STORAGE_RETRY_S\)") as info:
        OPERATIONS[operation](study)
    assert 0.5 < time.monotonic() - started < 2.5
    assert info.value.exit_code == 5 and "\n" not in str(info.value)
    with pytest.raises(StorageFault):  # at once: the storage is lost
        study.set_user_attr("again", 1)
    assert time.monotonic() - started < 2.5
    holder.join()
    assert optuna.load_study(study_name="s", storage=f"sqlite:///{db}").trials[0].value == 1.0


@pytest.mark.parametrize("value", ["-1", "ten", "1.5"])
def test_a_bad_retry_variable_is_refused_before_the_storage_is_opened(
        tmp_path, monkeypatch, value):
    monkeypatch.setenv("AUTOBATCH_STORAGE_RETRY_S", value)
    with pytest.raises(ConfigError, match="AUTOBATCH_STORAGE_RETRY_S must be a whole number"):
        open_storage(f"sqlite:///{tmp_path}/a.db")
    assert not (tmp_path / "a.db").exists()
    monkeypatch.setenv("AUTOBATCH_STORAGE_RETRY_S", "0")
    assert retry_seconds() == 0


# -- a trial failed behind its worker's back ---------------------------------------------

def fail_behind_its_back(trial):
    """What another worker's heartbeat sweep does to a trial whose worker is paused."""
    trial.study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)


WHAT_THE_WORKER_DOES_NEXT = {
    "tells its value": lambda trial: None,
    "reports a step": lambda trial: trial.report(0.5, step=1),
    "records a figure": lambda trial: trial.set_user_attr("steps", 10),
}


@pytest.mark.parametrize("next_step", WHAT_THE_WORKER_DOES_NEXT)
def test_a_trial_failed_behind_its_workers_back_is_dropped_and_the_study_goes_on(
        tmp_path, caplog, capfd, next_step):
    study = optuna.create_study(study_name="s",
                                storage=open_storage(f"sqlite:///{tmp_path}/s.db"))

    def during(trial):
        if trial.number == 1:
            fail_behind_its_back(trial)
            WHAT_THE_WORKER_DOES_NEXT[next_step](trial)

    run(study, Evaluations(during), n_trials=3)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL,
                                               TrialState.COMPLETE, TrialState.COMPLETE]
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert lines == ["trial 1 was failed by another worker while this one sent no heartbeat "
                     "past the grace period (paused?); dropped it, going on with the next "
                     "trial"]
    assert "Traceback" not in capfd.readouterr().err


# -- read-only and full filesystems (SQLite's own errors, no root needed) ----------------

def with_pragma(study, pragma: str) -> None:
    """Every connection of the study's storage from now on runs `pragma` first."""
    engine = study._storage._backend.engine
    event.listen(engine, "connect", lambda conn, _: conn.execute(pragma))
    engine.dispose()


def database_full(study):
    pages = study._storage._backend.engine.connect().exec_driver_sql(
        "pragma page_count").scalar()
    with_pragma(study, f"pragma max_page_count = {pages}")


def database_read_only(study):
    with_pragma(study, "pragma query_only = 1")


@pytest.mark.parametrize(("fault", "cause", "reason"), [
    (database_full, "no space left on device", "storage_full"),
    (database_read_only, "the database is read-only (attempt to write a readonly database)",
     "storage_read_only"),
])
def test_a_full_or_read_only_database_mid_study_is_one_fault_and_keeps_finished_trials(
        tmp_path, capfd, fault, cause, reason):
    db = tmp_path / "s.db"
    study = optuna.create_study(study_name="s", storage=open_storage(f"sqlite:///{db}"))

    def during(trial):
        if trial.number == 2:
            fault(study)
            trial.set_user_attr("curve", list(range(20000)))  # more pages than are left

    with pytest.raises(StorageFault) as info:
        run(study, Evaluations(during))
    message = str(info.value)
    assert message.startswith(f"cannot write the study storage {db}: {cause}; finished "
                              "trials are intact")
    assert message.endswith("trial 2 was left RUNNING (the next run marks it FAIL)") or \
        message.endswith(f"trial 2 was marked FAIL ({reason})")
    assert info.value.exit_code == 5 and info.value.reason == reason
    assert "Traceback" not in capfd.readouterr().err
    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{db}").trials
    assert [t.value for t in trials[:2]] == [0.0, 1.0]  # finished trials intact


# -- read-only and full filesystems, for real (a private tmpfs mount) --------------------

def private_mount(script: str, **env: str) -> subprocess.CompletedProcess:
    """Run a bash script in a mount namespace of its own with $M a small tmpfs (gone
    with the namespace); skip where this machine does not allow it."""
    if not shutil.which("unshare"):
        pytest.skip("needs unshare(1) for a private tmpfs mount")
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs none /mnt"],
                           capture_output=True)
    if probe.returncode:
        pytest.skip(f"cannot mount a private tmpfs here: {probe.stderr.decode().strip()}")
    setup = 'M=$(mktemp -d) && mount -t tmpfs -o size=4m none "$M" && cd "$M"\n'
    return subprocess.run(["unshare", "-m", "bash", "-c", setup + script],
                          capture_output=True, text=True, timeout=240,
                          env={**os.environ, "NO_COLOR": "1", **env})


TUNE = " ".join([sys.executable, "-m", "autobatch_cli", *slow_tune("sqlite:///$M/s.db")])
STATES = (f"{sys.executable} -c \"import optuna; print('states', [t.state.name for t in "
          "optuna.load_study(study_name='s', storage='sqlite:///'+'$M/s.db').trials])\"")


@pytest.mark.parametrize(("setup", "cause"), [
    ("mount -o remount,ro $M", "read-only file system"),
    ("dd if=/dev/zero of=$M/fill bs=4k 2>/dev/null", "no space left on device"),
])
def test_a_new_database_on_a_read_only_or_full_filesystem_is_one_line_and_no_file(
        setup, cause):
    done = private_mount(f"{setup}\n{TUNE}\necho rc=$?\nls $M")
    error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and re.fullmatch(
        rf"error: cannot create the study database /\S+/s.db: {cause}; nothing was left "
        r"behind \(pass --storage sqlite:///PATH on a writable filesystem with free "
        r"space\)", error[0]), done
    assert "rc=5" in done.stdout and "s.db\n" not in done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_an_existing_database_on_a_read_only_filesystem_or_a_disk_that_fills_mid_study():
    """Both on one tmpfs: a study runs until its disk fills after the first trial; then
    the filesystem turns read-only. Each ends in one line, exit 5, trials intact."""
    script = f"""
{TUNE} 2> err &
until grep -q "trial 0 " err; do sleep 0.1; done
dd if=/dev/zero of=$M/fill bs=4k 2>/dev/null
wait $!; echo rc=$?; grep -c Traceback err; grep ^error: err
rm fill; {STATES}
mount -o remount,ro $M
{TUNE}; echo rc=$?
{STATES}
"""
    done = private_mount(script)
    out, err = done.stdout, done.stderr
    assert out.count("rc=5") == 2 and "0\n" in out, out + err
    assert "no space left on device; finished trials are intact" in out
    assert out.count("'PRUNED'") + out.count("'COMPLETE'") >= 2  # trial 0, both times
    assert "read-only file system; finished trials are intact" in err
    assert "Traceback" not in err


# -- one tune at a time on a SQLite study ------------------------------------------------

HOLD = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode()); "
        "print('held', flush=True); time.sleep(60)")


def test_a_study_lock_is_refused_while_another_process_holds_it_and_freed_by_kill_9(tmp_path):
    db = tmp_path / "s.db"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, f"{db}.lock"], text=True,
                              stdout=subprocess.PIPE)
    assert holder.stdout.readline() == "held\n"
    with pytest.raises(StorageError, match=rf"^study database {db} is in use by another "
                       rf"autobatch tune \(pid {holder.pid}\); wait for it") as info:
        StudyLock(db)
    assert info.value.exit_code == 2
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with StudyLock(db), StudyLock(db):  # the kernel dropped it; one process may nest
        pass
    StudyLock(db).release()


def test_a_second_tune_on_a_running_sqlite_study_is_refused_and_sweeps_nothing(tmp_path):
    db = tmp_path / "s.db"
    # enough trials that the first is still running whatever this machine's speed
    first = autobatch(*slow_tune(f"sqlite:///{db}", n_trials=100))
    while line := first.stderr.readline():
        if "trial 0 " in line:
            break
    second = autobatch(*slow_tune(f"sqlite:///{db}"))
    _, err = second.communicate(timeout=120)
    assert second.returncode == 2
    assert err.strip() == (f"error: study database {db} is in use by another autobatch tune "
                           f"(pid {first.pid}); wait for it to end, or pass another --storage "
                           "(several processes on one study need PostgreSQL or a journal "
                           "file)")
    first.send_signal(signal.SIGINT)
    rest = first.communicate(timeout=120)[1]
    assert first.returncode == 130, rest
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{db}")
    failed = [t.user_attrs.get("fail_reason") for t in study.trials
              if t.state == TrialState.FAIL]
    assert failed in ([], ["interrupted"])  # the first's own stop; no zombie swept


# -- a PostgreSQL server of this test's own, restarted -----------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A throwaway PostgreSQL server (trust auth) in a temporary folder."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="autobatch-pg-"))
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        shutil.chown(self.folder, "postgres")
        self.as_postgres(str(PG_BIN / "initdb"), "-D", f"{self.folder}/data", "-A", "trust")
        self.start()

    def as_postgres(self, *cmd: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *cmd], check=True, capture_output=True, timeout=120)

    def ctl(self, *args: str) -> None:
        self.as_postgres(str(PG_BIN / "pg_ctl"), "-D", f"{self.folder}/data", "-w",
                         "-l", f"{self.folder}/log", *args)

    def start(self) -> None:
        self.ctl("-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1",
                 "start")

    def stop(self) -> None:
        self.ctl("-m", "fast", "stop")


@pytest.fixture(scope="module")
def own_server():
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"needs PostgreSQL's initdb and pg_ctl in {PG_BIN}")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        pytest.skip("initdb refuses root and runuser is missing")
    server = Server()
    yield server
    server.stop()
    shutil.rmtree(server.folder, ignore_errors=True)


def test_a_server_down_past_the_retry_window_is_one_line_and_back_up_it_is_used_again(
        own_server, monkeypatch):
    monkeypatch.setenv("AUTOBATCH_STORAGE_RETRY_S", "2")
    url = own_server.url.replace("postgres@", "postgres:s3cret@")
    study = optuna.create_study(storage=open_storage(url))
    study.tell(study.ask(), 1.0)
    own_server.stop()
    try:
        with pytest.raises(StorageFault, match=r"^lost the study storage postgresql://"
                           r"postgres:\*\*\*@127.0.0.1:\d+/postgres: .*retried for 2 s") as info:
            study.ask()
        assert "s3cret" not in str(info.value) and "\n" not in str(info.value)
    finally:
        own_server.start()
    again = optuna.load_study(study_name=study.study_name, storage=open_storage(url))
    assert [t.value for t in again.trials] == [1.0]


def study_for_workers(server: Server, prefix: str, *, n_trials: int,
                      heartbeat_s: int) -> tuple[str, dict[str, str]]:
    """A study set up for `autobatch worker`s on the server; its name and their env."""
    name = f"{prefix}-{os.getpid()}"
    env = {"AUTOBATCH_STORAGE": server.url, "AUTOBATCH_HEARTBEAT_S": str(heartbeat_s)}
    setup = autobatch(*slow_tune(server.url, n_trials=n_trials)[:-4], "--workers", "0",
                      "--study-name", name, env=env)
    assert setup.wait(timeout=240) == 0, setup.stderr.read()
    return name, env


@pytest.mark.slow
def test_workers_ride_out_a_postgresql_restart_and_finish_the_budget(own_server):
    name, env = study_for_workers(own_server, "restart", n_trials=6, heartbeat_s=2)
    workers = [autobatch("worker", "--study-name", name, env=env) for _ in range(2)]
    deadline = time.time() + 120
    while time.time() < deadline and len(optuna.load_study(
            study_name=name, storage=own_server.url).get_trials(states=(TrialState.RUNNING,))) < 2:
        time.sleep(0.2)  # until both are training
    own_server.stop()
    time.sleep(5)  # down for longer than a heartbeat grace period
    own_server.start()
    errors = [w.communicate(timeout=240)[1] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], errors
    assert not [e for e in errors if "Traceback" in e], "\n".join(errors)
    assert any("reachable again" in e for e in errors)
    study = optuna.load_study(study_name=name, storage=own_server.url)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 6 and not [t for t in study.trials if t.state == TrialState.RUNNING]


@pytest.mark.slow
def test_a_worker_paused_past_the_heartbeat_grace_drops_its_trial_and_goes_on(own_server):
    name, env = study_for_workers(own_server, "paused", n_trials=4, heartbeat_s=1)

    def trials(*states):
        return optuna.load_study(study_name=name, storage=own_server.url).get_trials(
            states=states)

    paused = autobatch("worker", "--study-name", name, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and not trials(TrialState.RUNNING):
        time.sleep(0.1)
    paused.send_signal(signal.SIGSTOP)
    survivor = autobatch("worker", "--study-name", name, env=env)
    while time.time() < deadline and not trials(TrialState.FAIL):
        time.sleep(0.2)  # the survivor found it stale (grace 3 s) and failed it
    paused.send_signal(signal.SIGCONT)
    errors = [w.communicate(timeout=240)[1] for w in (paused, survivor)]
    assert [paused.returncode, survivor.returncode] == [0, 0], errors
    assert "; dropped it, going on with the next trial" in errors[0]
    assert not [e for e in errors if "Traceback" in e or "Cannot tell" in e], "\n".join(errors)
    assert len(trials(TrialState.COMPLETE, TrialState.PRUNED)) == 4
    assert not trials(TrialState.RUNNING)
