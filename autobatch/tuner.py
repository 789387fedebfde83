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
import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import optuna
import torch
from optuna.trial import FrozenTrial

import autobatch.keys as keys
from autobatch.candidate import recommendation, unreliable
from autobatch.config import STUDY_SHARE, VERIFY_MAX_SHARE, TuneConfig
from autobatch.device import check_cuda_devices, device_name, resolve_device
from autobatch.errors import AutobatchError, ConfigError, TargetNotReachedError
from autobatch.events import EventCallback, TuneEvent
from autobatch.locks import StudyLock
from autobatch.measure import ProfileResult
from autobatch.measure.budget import stage_budget
from autobatch.measure.trust import read_profile
from autobatch.result import StudyInfo, TuneResult
from autobatch.search import (
    METRIC_NAME,
    MIN_IMPROVEMENT,
    Prior,
    WorkerSettings,
    check_contract,
    contract,
    converged,
    default_study_name,
    fail_running,
    make_objective,
    measure_prior,
    pruner,
    reached_trials,
    run_trials,
    sampler,
    seed_trials,
    spawn_workers,
    summarize,
)
from autobatch.search.course import CourseWatch
from autobatch.search.drift import DriftWatch, drift_record
from autobatch.search.parallel_runner import check_nproc
from autobatch.search.script_prior import check_script_bounds, measure_script
from autobatch.search.script_runner import ScriptRunner
from autobatch.search.workers import KEPT_FOR_VERIFICATION
from autobatch.storage import (
    default_storage_url,
    mask_url,
    open_storage,
    storage_file,
    supports_workers,
)
from autobatch.train import check_data
from autobatch.verify import FINISH_RESERVE_S, VerifyPlan, verification_seconds, verify
from autobatch.workloads import ScriptWorkload, Workload

log = logging.getLogger(__name__)



def measure(workload: Workload | ScriptWorkload, config: TuneConfig, device: torch.device,
            emit: EventCallback, saved_profile: ProfileResult | None = None) -> Prior:
    if isinstance(workload, ScriptWorkload):  # its model is out of sight: time its steps
        return measure_script(ScriptRunner(workload, device), config.bounds, emit)
    return measure_prior(workload, config.bounds, device, emit, headroom=config.headroom,
                         memory_limit=config.memory_limit, use_cache=config.use_cache,
                         seed=config.seed, trial_budget_s=config.trial_budget,
                         saved_profile=saved_profile, budget_s=stage_budget(config.timeout_s))


def watch(*callbacks: Callable[[optuna.Study, FrozenTrial], None]) -> Callable[
        [optuna.Study, FrozenTrial], None]:
    """One on_trial callback that calls each of `callbacks` in turn."""
    def each(study: optuna.Study, trial: FrozenTrial) -> None:
        for callback in callbacks:
            callback(study, trial)
    return each


def settings(workload: Workload | ScriptWorkload, config: TuneConfig) -> WorkerSettings:
    """What a worker process needs to rebuild the objective (see search/workers.py)."""
    return WorkerSettings(workload=workload.spec, target=config.target,
                          trial_budget_s=config.trial_budget, time_mode=config.time_mode,
                          n_trials=config.total_trials, patience=config.patience,
                          seed=config.seed, nproc_per_trial=config.nproc_per_trial)


@dataclass(frozen=True)
class Prepared:
    study: optuna.Study
    prior: Prior
    storage_url: str
    # a SQLite study's single-writer lock, held until tune() ends (or this is dropped)
    lock: StudyLock | None = None


def prepare(workload: Workload | ScriptWorkload, config: TuneConfig, device: torch.device,
            emit: EventCallback) -> Prepared:
    """Create or resume the study: contract check, zombies, prior, seeded trials."""
    storage_url = config.storage or default_storage_url()
    if config.workers != 1 and workload.spec is None:
        raise ConfigError("workers rebuild the workload by name: load it with "
                          "autobatch.load_workload() to use workers != 1")
    # unusable devices and data fail here, before a study is created for them
    check_nproc(config.nproc_per_trial, device, config.devices)
    if config.devices:
        check_cuda_devices(config.devices)
    if isinstance(workload, ScriptWorkload):
        check_script_bounds(config.bounds)
        if config.profile:
            raise ConfigError("--profile: a script's profile is its own steps, timed by tune")
    else:
        check_data(workload, config.batch_size or config.min_batch, workload.model_factory(),
                   torch.device("cpu"))
    saved = read_profile(config.profile, workload.name) if config.profile else None
    path = storage_file(storage_url)
    # before anything is swept as a zombie, no other tune may run on a SQLite file
    lock = StudyLock(path) if path and not supports_workers(storage_url) else None
    try:
        return _open_study(workload, config, device, emit, storage_url, lock, saved)
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _open_study(workload: Workload | ScriptWorkload, config: TuneConfig, device: torch.device,
                emit: EventCallback, storage_url: str, lock: StudyLock | None,
                saved_profile: ProfileResult | None) -> Prepared:
    storage = open_storage(storage_url)
    path = storage_file(storage_url)
    emit(TuneEvent("stage", "storage", f"study storage {path or mask_url(storage_url)}"))
    name = config.study_name or default_study_name(workload, config.target)
    exists = name in optuna.get_all_study_names(storage)
    if config.new_study and exists:
        name, exists = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}", False
    # a new study is measured before it is created: nothing fits -> no half-made study
    prior = None if exists else measure(workload, config, device, emit, saved_profile)
    study = optuna.create_study(storage=storage, study_name=name, direction="minimize",
                                load_if_exists=True, sampler=sampler(config.seed),
                                pruner=pruner())
    if not exists:  # the readable attributes first: the dashboard lists them in order
        for key in (keys.RECOMMENDATION_TEXT, keys.VERDICT_TEXT):
            study.set_user_attr(key, keys.PENDING)
    check_contract(study, contract(workload, target=config.target, bounds=config.bounds,
                                   time_mode=config.time_mode))
    if not supports_workers(storage_url):  # a single worker: anything RUNNING is dead
        zombies = fail_running(study, "zombie")
        if zombies:
            emit(TuneEvent("stage", "resume",
                           f"marked {zombies} abandoned running trial(s) FAIL"))
    with warnings.catch_warnings():  # experimental in Optuna, and exactly what we need
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([METRIC_NAME])
    if keys.PRIOR in study.user_attrs:
        prior = Prior.from_dict(study.user_attrs[keys.PRIOR])
        emit(TuneEvent("stage", "resume", f"resuming study {name!r} ({tally(study)})"))
    else:
        prior = prior or measure(workload, config, device, emit, saved_profile)
        study.set_user_attr(keys.SETTINGS, settings(workload, config).to_dict())
        study.set_user_attr(keys.PRIOR, prior.to_dict())
        for params in seed_trials(prior, workload.reference):
            study.enqueue_trial(params, skip_if_exists=True)
    return Prepared(study=study, prior=prior, storage_url=storage_url, lock=lock)


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
        study_deadline = (started + STUDY_SHARE * config.timeout_s if config.timeout_s
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
                                  deadline=study_deadline, devices=config.devices,
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
                                       study_deadline)

            def verification_starts() -> float:
                """Once the seeded trials have run (before, the best times say little),
                the time left should hold the race's first rounds; at most
                VERIFY_MAX_SHARE of the timeout is kept for them."""
                trials = study.get_trials(deepcopy=False)
                if any(t.state == optuna.trial.TrialState.WAITING for t in trials):
                    return math.inf
                values = sorted(t.value for t in reached_trials(trials))
                kept = min(verification_seconds(values, plan), VERIFY_MAX_SHARE * config.timeout_s)
                return deadline - FINISH_RESERVE_S - kept

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
            raise TargetNotReachedError(
                f"no trial reached {config.target:g} in study {study.study_name!r} ({counts}); "
                "raise --trial-budget, lower --target, or widen the bounds")
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
            speed_drift=drift_record(study.get_trials(deepcopy=False), prior.profile))
        verdict = result.judged()
        emit(TuneEvent("stage", "verdict", f"{verdict.verdict}: {verdict.reason}"))
        return result


def tally(study: optuna.Study) -> str:
    """The study's trials by state, as a resume reports them: "5 finished (3 complete,
    2 pruned), 1 failed, 2 queued" (queued: seeds not yet run; running: other workers')."""
    states = optuna.trial.TrialState
    count = {state: 0 for state in states}
    for trial in study.get_trials(deepcopy=False):
        count[trial.state] += 1
    done = count[states.COMPLETE] + count[states.PRUNED]
    parts = [f"{done} finished ({count[states.COMPLETE]} complete, "
             f"{count[states.PRUNED]} pruned)"]
    for state, word in ((states.FAIL, "failed"), (states.RUNNING, "running"),
                        (states.WAITING, "queued")):
        if count[state]:
            parts.append(f"{count[state]} {word}")
    return ", ".join(parts)
