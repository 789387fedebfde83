"""tune(): probe -> profile -> LR range -> study -> verification -> recommendation.

The measurements (autobatch/measure/) become the prior (search/prior.py), the
study searches the space they define for the shortest time to target (search/), in
this process or in worker processes on a shared storage (search/workers.py), and
the best few configurations are re-measured before one is recommended (verify.py).
Publishing the study's note and artifacts for the dashboard is the caller's choice
(autobatch.report.publish): the tuner knows nothing of presentation.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable

import optuna
import torch
from optuna.trial import FrozenTrial

import autobatch.keys as keys
from autobatch.candidate import recommendation, unreliable
from autobatch.config import STUDY_SHARE, VERIFY_MAX_SHARE, TuneConfig
from autobatch.device import device_name, resolve_device
from autobatch.errors import AutobatchError, ConfigError, TargetNotReachedError
from autobatch.events import EventCallback, TuneEvent
from autobatch.prepare import prepare, settings
from autobatch.result import StudyInfo, TuneResult
from autobatch.search import (
    MIN_IMPROVEMENT,
    converged,
    make_objective,
    reached_trials,
    run_trials,
    spawn_workers,
    summarize,
)
from autobatch.search.checkpoints import CheckpointStore
from autobatch.search.course import CourseWatch
from autobatch.search.drift import DriftWatch, drift_record
from autobatch.search.workers import KEPT_FOR_VERIFICATION
from autobatch.storage import mask_url, supports_workers
from autobatch.verify import FINISH_RESERVE_S, VerifyPlan, verification_seconds, verify
from autobatch.workloads import ScriptWorkload, Workload


def watch(*callbacks: Callable[[optuna.Study, FrozenTrial], None]) -> Callable[
        [optuna.Study, FrozenTrial], None]:
    """One on_trial callback that calls each of `callbacks` in turn."""
    def each(study: optuna.Study, trial: FrozenTrial) -> None:
        for callback in callbacks:
            callback(study, trial)
    return each


def tune(workload: Workload | ScriptWorkload, config: TuneConfig, *,
         device: str | torch.device = "auto", on_event: EventCallback | None = None,
         started: float | None = None) -> TuneResult:
    """Find the fastest configuration to config.target; see the module docstring.

    With workers=0 use prepare() instead: it sets the study up for `autobatch worker`s.
    started: when the timeout's clock started (epoch seconds; default: now), so a
    command line can count its own start-up.
    Raises TargetNotReachedError (exit 3) when no trial reached the target,
    DoesNotFitError (exit 4) when nothing fits; KeyboardInterrupt leaves the running
    trial FAIL with reason 'interrupted' and everything finished saved.
    """
    started = started or time.time()
    deadline = started + config.timeout_s if config.timeout_s else math.inf
    emit = on_event or (lambda event: None)
    dev = resolve_device(device)
    if config.workers == 0:
        raise ConfigError("tune() runs trials: use prepare() to set a study up for workers")
    prepared = prepare(workload, config, dev, emit)
    with prepared.lock or contextlib.nullcontext():
        study, prior = prepared.study, prepared.prior
        # Trials may run to the end while none has reached the target; once one has,
        # none starts after the study's share of the timeout, and the rest is kept
        # for re-measuring (verification_starts).
        study_deadline = deadline - FINISH_RESERVE_S
        verify_from = (started + STUDY_SHARE * config.timeout_s if config.timeout_s
                       else math.inf)
        emit(TuneEvent("stage", "study", f"{config.total_trials or 'open-ended'} trials, "
                       f"{config.workers} worker(s)"))
        plan = VerifyPlan(target=config.target, finalists=config.verify, runs=config.verify_runs,
                          max_runs=config.verify_max_runs,
                          budget_s=config.trial_budget, compare=config.compare,
                          fixed_batch=config.batch_size, nproc_per_trial=config.nproc_per_trial)
        if config.workers > 1:
            drift = DriftWatch(prior.profile, emit)  # the workers' trials, as they finish
            codes = spawn_workers(config.workers, prepared.storage_url, study.study_name,
                                  deadline=study_deadline, verify_from=verify_from,
                                  devices=config.devices,
                                  started=started, on_poll=lambda: drift.check(study),
                                  nproc_per_trial=config.nproc_per_trial)
            failed = sorted(c for c in codes if c != 0)
            if failed and len(failed) == len(codes):
                error = AutobatchError(f"every worker failed (exit codes {failed}); their "
                                       "errors are above")
                if len(set(failed)) == 1:  # all for one reason (a lost storage: 5)
                    error.exit_code = failed[0]
                raise error
            if failed:
                emit(TuneEvent("stage", "workers", f"{len(failed)} of {len(codes)} workers "
                               f"failed (exit codes {failed}); the others finished the study"))
        else:
            objective = make_objective(workload, prior, settings(workload, config), dev,
                                       study_deadline, prepared.store)

            def verification_starts() -> float:
                return trials_end_at(study.get_trials(deepcopy=False), plan,
                                     verify_from=verify_from, study_deadline=study_deadline,
                                     max_kept_s=VERIFY_MAX_SHARE * config.timeout_s)

            ended = run_trials(study, objective, n_trials=config.total_trials,
                               deadline=study_deadline,
                               exclusive=not supports_workers(prepared.storage_url),
                               patience=config.patience,
                               on_trial=watch(CourseWatch(prior.space, emit),
                                              DriftWatch(prior.profile, emit)),
                               ends_by=verification_starts if config.timeout_s else None)
            if ended == KEPT_FOR_VERIFICATION:
                emit(TuneEvent("stage", "study", ended))
        if config.patience and converged(study.get_trials(deepcopy=False), config.patience):
            emit(TuneEvent("stage", "study", f"converged: the last {config.patience} trials did "
                           f"not cut the best time by {MIN_IMPROVEMENT:.0%}"))
        summary = summarize(study)
        reached = reached_trials(study.get_trials(deepcopy=False))
        if not reached:
            counts = ", ".join(f"{n} {k}" for k, n in sorted(summary.items()))
            if not any(t.state.is_finished() for t in study.get_trials(deepcopy=False)):
                raise TargetNotReachedError(
                    f"the study ran no trial: the measurements before it took "
                    f"{time.time() - started:.0f}s of the {config.timeout_s or 0:g}s "
                    f"--timeout ({counts}); raise --timeout")
            trials = study.get_trials(deepcopy=False)
            paused = (" (paused trials resume from their checkpoints when it is run again)"
                      if any(keys.PAUSED_AT_RUNG in t.user_attrs for t in trials) else "")
            raise TargetNotReachedError(
                f"no trial reached {config.target:g} in study {study.study_name!r} ({counts}); "
                f"raise --trial-budget or --timeout{paused}, lower --target, or widen the "
                "bounds")
        candidates = verify(workload, plan, prior, reached, dev, deadline, emit)
        best = recommendation(candidates)
        if warning := unreliable(best):
            emit(TuneEvent("stage", "warning", warning))
        result = TuneResult.build(
            workload=workload.name, target=config.target, device=device_name(dev), prior=prior,
            candidates=candidates, best=best,
            study=StudyInfo(name=study.study_name, storage=mask_url(prepared.storage_url),
                            trials=summary),
            seconds=time.time() - started,
            train_size=len(workload.train_data) if isinstance(workload, Workload) else None,
            speed_drift=drift_record(study.get_trials(deepcopy=False), prior.profile),
            first_model_s=first_model_s(reached, started),
            kept_model=hand_over(prepared.store, reached, config.keep_model, emit))
        if prepared.store is not None:
            prepared.store.clear()  # the paused trials are no use to a finished study
        verdict = result.judged()
        emit(TuneEvent("stage", "verdict", f"{verdict.verdict}: {verdict.reason}"))
        return result


def trials_end_at(trials: list[FrozenTrial], plan: VerifyPlan, *, verify_from: float,
                  study_deadline: float, max_kept_s: float) -> float:
    """When the in-process study starts its last trial (epoch seconds).

    Never while no trial has reached the target: with nothing to re-measure, the study
    keeps the time. Once one has, the time left must hold the race's first rounds (at
    most max_kept_s), and past verify_from no trial starts unless seeded trials still
    wait (before they have run, the best times say little).
    """
    values = sorted(t.value for t in reached_trials(trials))
    if not values:
        return math.inf
    kept_by = study_deadline - min(verification_seconds(values, plan), max_kept_s)
    if any(t.state == optuna.trial.TrialState.WAITING for t in trials):
        return kept_by
    return min(verify_from, kept_by)


def first_model_s(reached: list[FrozenTrial], started: float) -> float | None:
    """Seconds from `started` until a trial of this run first reached the target."""
    times = [t.datetime_complete.timestamp() - started for t in reached
             if t.datetime_complete is not None]
    times = [t for t in times if t >= 0]  # earlier runs' trials of a resumed study
    return min(times) if times else None


def hand_over(store: CheckpointStore | None, reached: list[FrozenTrial], path: str | None,
              emit: EventCallback) -> str | None:
    """Move the model of the fastest trial to reach the target to `path`."""
    if store is None or path is None:
        return None
    for trial in sorted(reached, key=lambda t: t.value):
        if store.hand_over(trial.number, path):
            emit(TuneEvent("stage", "model", f"kept the model of trial {trial.number} "
                           f"({trial.user_attrs.get(keys.RECIPE)}, at the target after "
                           f"{trial.value:.3g}s of training) in {path}"))
            return path
    emit(TuneEvent("stage", "warning", "no model was kept: the trials that reached the "
                   "target ran without --keep-model (an earlier run of the study)"))
    return None
