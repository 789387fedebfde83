"""Running a study's trials: in this process, or in N worker processes on one storage.

Every worker, local or on another machine (`autobatch worker`), rebuilds the same
objective from what the study stores (the workload's spec, the settings and the
prior), so joining needs only the storage URL and the study name. The global trial
budget counts finished (COMPLETE or PRUNED) trials, and no trial starts while
running ones already hold the rest of it; a trial of a worker that died is failed
by the heartbeat and re-run by a survivor, and does not count.

Local workers are `autobatch worker` processes (worker_processes.py).
"""

from __future__ import annotations

import logging
import math
import re
import time
import warnings
from collections.abc import Callable
from contextlib import suppress

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import fail_stale_trials
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import TrialState

import autobatch.keys as keys
import autobatch.stop as stop
from autobatch.device import resolve_device
from autobatch.errors import ConfigError, StorageFault
from autobatch.faults import causes, lost_fault
from autobatch.search.objective import (
    Objective,
    TrialAbandoned,
    interrupt_reason,
    objective_from_study,
)
from autobatch.search.pruning import pruner
from autobatch.search.runners import TrialCrashed
from autobatch.search.study import converged, fail_running, reached_trials, sampler
from autobatch.storage import mask_url, open_storage, require_shared_storage

WAIT_S = 1.0  # poll interval while other workers hold the remaining budget
KEPT_FOR_VERIFICATION = "ended: the rest of the time is kept for re-measuring the finalists"


class _InterruptsInOneLine(logging.Filter):
    """Optuna logs a trial that a stop signal, a storage fault, another worker or a race
    for the budget's last trial ended as failed, with a traceback; the command line
    reports each in one line instead (the trial's own line says why)."""

    def __init__(self) -> None:
        super().__init__()
        self.quiet: str | None = None  # the trial whose second warning is dropped too

    def filter(self, record: logging.LogRecord) -> bool:
        trial = re.match(r"Trial (\d+) failed", str(record.msg))
        if record.exc_info and isinstance(record.exc_info[1], _ONE_LINERS):
            self.quiet = trial[1] if trial else None
            return False
        if trial and trial[1] == self.quiet:  # "failed with value None", right after
            self.quiet = None
            return False
        return True


log = logging.getLogger(__name__)
TrialCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


def count(study: optuna.Study, *states: TrialState) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


class SurplusTrial(Exception):
    """Another worker started the budget's last trial at the same moment as this one."""


def claim(study: optuna.Study, trial: optuna.Trial, n_trials: int) -> None:
    """Fail a trial that concurrent starts pushed past the budget (reason over_budget).

    Two workers can both see one trial left and both start one. The slot goes to the
    lower trial number (numbers are handed out in creation order), so exactly one of
    them runs, whichever of them checks first.
    """
    ahead = [t for t in study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
        if t.number < trial.number]
    if len(ahead) >= n_trials:
        trial.set_user_attr(keys.FAIL_REASON, "over_budget")
        raise SurplusTrial(f"another worker took the last of the {n_trials}-trial budget")


_ONE_LINERS = (KeyboardInterrupt, StorageFault, UpdateFinishedTrialError, SurplusTrial)
logging.getLogger("optuna.study._optimize").addFilter(_InterruptsInOneLine())


def run_trials(study: optuna.Study, objective: Objective, *, n_trials: int | None,
               deadline: float, exclusive: bool, patience: int | None = None,
               on_trial: TrialCallback | None = None,
               ends_by: Callable[[], float] | None = None) -> str:
    """Run trials one at a time until n_trials have finished, the deadline (epoch s),
    or the study has converged (see study.converged); returns why it stopped, in words.
    ends_by: no trial starts after the time it returns, asked before each one (the
    tune keeps what re-measuring the finalists will take).

    When the remaining budget is held by running trials, wait for them: with
    heartbeats, a dead worker's trial turns stale, is failed and re-queued, and this
    worker runs the retry. exclusive: this process is the study's only worker (SQLite),
    so on an interrupt any trial still RUNNING is its own.
    """
    callbacks = [on_trial] if on_trial else []
    heartbeat = is_heartbeat_enabled(study._storage)
    current: list[optuna.Trial] = []  # the trial being run

    def within_budget(trial: optuna.Trial) -> float:
        current[:] = [trial]
        # one guard from the trial's creation on: a signal can land while claiming
        with interrupt_reason(trial):
            if n_trials is not None:
                claim(study, trial, n_trials)
            return objective.evaluate(trial)

    while time.time() < deadline:
        stop.check()  # a safe point: between trials
        if ends_by is not None and time.time() >= ends_by():
            return KEPT_FOR_VERIFICATION
        if heartbeat:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                fail_stale_trials(study)
        if patience and converged(study.get_trials(deepcopy=False), patience):
            return (f"the study converged (the last {patience} trials did not improve on "
                    "the best time)")
        if n_trials is not None:
            finished = count(study, TrialState.COMPLETE, TrialState.PRUNED)
            if finished >= n_trials:
                return f"the study's {n_trials}-trial budget is used up"
            if finished + count(study, TrialState.RUNNING) >= n_trials:
                if not heartbeat:  # without heartbeats a dead worker's trial is never freed
                    return (f"the rest of the {n_trials}-trial budget is held by trials "
                            "other workers are running")
                time.sleep(WAIT_S)
                continue
        try:
            objective.before_trial(study)  # promotions are queued: they go first
            study.optimize(within_budget, n_trials=1, callbacks=callbacks, gc_after_trial=True,
                           catch=(SurplusTrial, TrialCrashed))
        except KeyboardInterrupt:
            if exclusive:  # a trial still RUNNING is the one Optuna had just created
                fail_running(study, "interrupted")
            raise
        except TrialAbandoned as abandoned:
            raise closed_after(study, current, abandoned.fault) from None
        except Exception as exc:
            fault = next((e for e in causes(exc) if isinstance(e, StorageFault)),
                         lost_fault(study._storage))
            if fault is not None:
                raise closed_after(study, current, fault) from None
            if not (current and failed_elsewhere(study, current[0], exc)):
                raise
            log.warning("trial %d was failed by another worker while this one sent no "
                        "heartbeat past the grace period (paused?); dropped it, going on "
                        "with the next trial", current[0].number)
    return "the time for trials is spent (deadline)"


def failed_elsewhere(study: optuna.Study, trial: optuna.Trial, exc: Exception) -> bool:
    """Whether `exc` came from updating or telling `trial` after another worker had
    failed it (its heartbeat was stale): the trial is finished in the storage."""
    if not any(isinstance(e, UpdateFinishedTrialError) or (
            isinstance(e, ValueError) and str(e).startswith("Cannot tell a "))
            for e in causes(exc)):
        return False
    return study._storage.get_trial(trial._trial_id).state.is_finished()


def closed_after(study: optuna.Study, current: list[optuna.Trial],
                 fault: StorageFault) -> StorageFault:
    """The fault, saying what became of the trial it interrupted: marked FAIL with the
    fault's reason where the storage still takes it, else left RUNNING for the next run
    (SQLite) or the heartbeat (a server) to fail."""
    if not current:
        return fault
    trial, storage = current[0], study._storage
    fate = "was left RUNNING (the next run marks it FAIL)"
    with suppress(StorageFault):
        if storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
            storage.set_trial_user_attr(trial._trial_id, keys.FAIL_REASON, fault.reason)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        if storage.get_trial(trial._trial_id).state == TrialState.FAIL:
            fate = f"was marked FAIL ({fault.reason})"
    return StorageFault(f"{fault}; trial {trial.number} {fate}", fault.reason)


def once_reached(study: optuna.Study, at: float) -> Callable[[], float]:
    """run_trials' ends_by: `at` once a trial has reached the target, never before: a
    study with no model at the target has nothing to re-measure, so it keeps the time."""
    def ends_by() -> float:
        return at if reached_trials(study.get_trials(deepcopy=False)) else math.inf
    return ends_by


def work(storage_url: str, study_name: str, *, device: str = "auto",
         deadline: float = math.inf, verify_from: float = math.inf,
         on_trial: TrialCallback | None = None,
         checkpoint_dir: str | None = None, nproc_per_trial: int | None = None) -> str:
    """Join a study and run trials until its budget is used up; why it stopped, in words.
    deadline: no trial runs past it; verify_from: no trial starts after it once one has
    reached the target (see once_reached). nproc_per_trial: this worker's ranks per
    trial (None: as the study was set up)."""
    require_shared_storage(storage_url, "`autobatch worker`")  # SQLite: `tune` runs trials
    storage = open_storage(storage_url)
    try:
        # seed None: workers sharing one seed would all suggest the same configurations
        study = optuna.load_study(study_name=study_name, storage=storage,
                                  sampler=sampler(None), pruner=pruner())
    except KeyError:
        raise ConfigError(
            f"no study {study_name!r} in {mask_url(storage_url)}") from None
    objective, settings = objective_from_study(study, resolve_device(device), deadline,
                                               storage_url, checkpoint_dir, nproc_per_trial)
    return run_trials(study, objective, n_trials=settings.n_trials, deadline=deadline,
                      exclusive=False, patience=settings.patience, on_trial=on_trial,
                      ends_by=once_reached(study, verify_from))
