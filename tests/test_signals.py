"""Ctrl-C and SIGTERM on a real `autobatch tune` process: exit code, trial states, resume."""

import random
import signal
import sqlite3
import time

import optuna
import pytest
from optuna.trial import TrialState

import autobatch.train.checkpoint as checkpoint
from tests.conftest import FIXTURES, autobatch


def running_trials(db) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("select count(*) from trials where state = 'RUNNING'"
                                ).fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def slow_tune(db):
    return ["tune", "--workload", "user_workloads:slow", "--app-dir", str(FIXTURES),
            "--target", "0.99", "--n-trials", "3", "--trial-budget", "2s", "--batch-size",
            "16", "--lr", "0.05", "--momentum", "0.9", "--verify", "0", "--storage",
            f"sqlite:///{db}", "--study-name", "s"]


def start_and_signal_mid_trial(args, tmp_path, sig):
    """Start `autobatch tune`, send `sig` while its second trial is training, and return
    the process and the stderr read so far.

    The first trial's progress line says the probe and profile (which train the model
    too) are over; the slow model's marker file, removed then, reappears once the next
    trial trains.
    """
    marker = tmp_path / "training"
    proc = autobatch(*args, env={"USER_SLOW_TRAINING": str(marker)})
    seen = []
    while line := proc.stderr.readline():
        seen.append(line)
        if "trial 0 " in line:
            break
    marker.unlink(missing_ok=True)
    deadline = time.time() + 60
    while time.time() < deadline and not marker.exists() and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, "autobatch tune ended before a second trial trained:\n" + \
        "".join(seen)
    proc.send_signal(sig)
    return proc, "".join(seen)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.slow
def test_signal_fails_the_running_trial_and_a_rerun_resumes(tmp_path, sig, code):
    db = tmp_path / "study.db"
    args = slow_tune(db)
    proc, seen = start_and_signal_mid_trial(args, tmp_path, sig)
    err = seen + proc.communicate(timeout=60)[1]
    assert proc.returncode == code, err
    assert "rerun to resume" in err
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{db}")
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    interrupted = [t for t in study.trials if t.state == TrialState.FAIL]
    assert [t.user_attrs.get("fail_reason") for t in interrupted] == ["interrupted"]

    rerun = autobatch(*args)
    _, err = rerun.communicate(timeout=240)
    assert rerun.returncode in (0, 3), err  # 3: the slow workload may miss 0.99
    assert "resuming study" in err
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{db}")
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3


@pytest.mark.slow
def test_sigkill_leaves_a_zombie_that_the_rerun_fails_and_replaces(tmp_path):
    db = tmp_path / "study.db"
    args = slow_tune(db)
    proc, _ = start_and_signal_mid_trial(args, tmp_path, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert running_trials(db) == 1  # nothing could close it
    rerun = autobatch(*args)
    _, err = rerun.communicate(timeout=240)
    assert rerun.returncode in (0, 3), err
    assert "marked 1 abandoned running trial(s) FAIL" in err
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{db}")
    assert [t.user_attrs.get("fail_reason") for t in study.trials
            if t.state == TrialState.FAIL] == ["zombie"]
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3


@pytest.mark.slow
def test_every_stop_signal_is_obeyed_whenever_it_arrives(tmp_path):
    """Signals at random moments of a tune (start-up, probe, profile, trials), some
    twice: every run ends promptly with the first signal's code, one line and no
    traceback, and leaves no trial RUNNING."""
    rng = random.Random(11)
    for attempt in range(6):
        db = tmp_path / f"study{attempt}.db"
        args = [*slow_tune(db)[:-4], "--n-trials", "50", "--storage", f"sqlite:///{db}",
                "--study-name", "s"]
        sig = rng.choice([signal.SIGINT, signal.SIGTERM])
        proc = autobatch(*args)
        time.sleep(rng.uniform(0.2, 9.0))
        proc.send_signal(sig)
        if rng.random() < 0.3:
            time.sleep(rng.uniform(0.0, 0.3))
            proc.send_signal(sig)
        started = time.monotonic()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig], err
        assert "Traceback" not in err and "failed with" not in err, err
        assert time.monotonic() - started < 15, err  # promptly: no stage runs to its end
        assert running_trials(db) == 0


def paused_trials(db) -> list[int]:
    """Numbers of the trials that paused at a rung so far."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db) as conn:
            return [n for (n,) in conn.execute(
                "select t.number from trials t join trial_user_attributes a "
                "on a.trial_id = t.trial_id where a.key = 'paused_at_rung'")]
    except sqlite3.OperationalError:
        return []


@pytest.mark.slow
def test_sigkill_keeps_paused_trials_resumable_from_their_checkpoints(tmp_path):
    # rungs at 0.1, 0.3, 0.9 and 2.7 s: the slow model (5 ms a step) never reaches 0.99,
    # so every trial pauses at 0.1 s, and after three the best is resumed
    db = tmp_path / "study.db"
    args = slow_tune(db) + ["--rungs", "on"]
    args[args.index("--n-trials") + 1] = "8"
    args[args.index("--trial-budget") + 1] = "2.7s"
    proc = autobatch(*args)
    deadline = time.time() + 120
    while time.time() < deadline and len(paused_trials(db)) < 2 and proc.poll() is None:
        time.sleep(0.05)
    proc.kill()
    proc.communicate(timeout=60)
    first = paused_trials(db)
    assert len(first) >= 2, "no trial paused before the kill"
    folder = tmp_path / "study-checkpoints" / "s"
    for number in first:  # written whole: each one loads
        assert checkpoint.load(folder / f"trial-{number}.ckpt")["identity"]["workload"]

    rerun = autobatch(*args)
    _, err = rerun.communicate(timeout=240)
    assert rerun.returncode == 3, err  # the target is out of reach; its checkpoints stay
    assert "paused trials resume from their checkpoints" in err
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{db}")
    # the first run's paused trials count at the first rung: promotions resume from them
    resumed = [t for t in study.trials if "continues_trial" in t.user_attrs
               and t.state != TrialState.FAIL]
    assert resumed and not any("restarted_because" in t.user_attrs for t in resumed)
