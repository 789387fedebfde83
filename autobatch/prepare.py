"""prepare(): the study a tune runs, created or resumed, with its prior.

A new study is measured before it is created (probe -> profile -> LR range: the prior;
nothing fits -> no half-made study); a resumed one must ask the same question (its
contract), and its abandoned running trials are failed. Seeded trials are queued, and
the settings every worker rebuilds the objective from are stored in the study.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import optuna
import torch

import autobatch.keys as keys
from autobatch.config import TuneConfig
from autobatch.device import check_cuda_devices
from autobatch.errors import ConfigError
from autobatch.events import EventCallback, TuneEvent
from autobatch.hyperparams import AUTO
from autobatch.locks import StudyLock
from autobatch.measure import ProfileResult
from autobatch.measure.budget import stage_budget
from autobatch.measure.trust import read_profile
from autobatch.search import (
    METRIC_NAME,
    Prior,
    WorkerSettings,
    check_contract,
    contract,
    default_study_name,
    fail_running,
    measure_prior,
    pruner,
    sampler,
    seed_trials,
)
from autobatch.search.checkpoints import CheckpointStore, base_folder
from autobatch.search.objective import study_store
from autobatch.search.parallel_runner import check_nproc
from autobatch.search.rungs import MIN_FIRST_RUNG_S, Rungs
from autobatch.search.script_prior import check_script_bounds, measure_script
from autobatch.search.script_runner import ScriptRunner
from autobatch.storage import (
    default_storage_url,
    mask_url,
    open_storage,
    storage_file,
    supports_workers,
)
from autobatch.train import check_data
from autobatch.train.precision import check_precision
from autobatch.workloads import ScriptWorkload, Workload


def measure(workload: Workload | ScriptWorkload, config: TuneConfig, device: torch.device,
            emit: EventCallback, saved_profile: ProfileResult | None = None) -> Prior:
    if isinstance(workload, ScriptWorkload):  # its model is out of sight: time its steps
        return measure_script(ScriptRunner(workload, device), config.bounds, emit)
    return measure_prior(workload, config.bounds, device, emit, headroom=config.headroom,
                         memory_limit=config.memory_limit, use_cache=config.use_cache,
                         seed=config.seed, trial_budget_s=config.trial_budget,
                         saved_profile=saved_profile, budget_s=stage_budget(config.timeout_s))


def settings(workload: Workload | ScriptWorkload, config: TuneConfig) -> WorkerSettings:
    """What a worker process needs to rebuild the objective (see search/workers.py)."""
    return WorkerSettings(workload=workload.spec, target=config.target,
                          trial_budget_s=config.trial_budget, time_mode=config.time_mode,
                          n_trials=config.total_trials, patience=config.patience,
                          seed=config.seed, rungs=rungs_of(workload, config),
                          checkpoint_dir=config.checkpoint_dir,
                          keep_models=config.keep_model is not None,
                          nproc_per_trial=config.nproc_per_trial)


def rungs_of(workload: Workload | ScriptWorkload, config: TuneConfig) -> tuple[float, ...] | None:
    """The study's rungs (search/rungs.py): none for runs autobatch cannot pause (a
    script's, a framework trainer's, a data-parallel one's), nor by default on a database
    server without a --checkpoint-dir its workers share (asked for there, they are
    refused: exit 2)."""
    if config.rungs == "off" or isinstance(workload, ScriptWorkload) or workload.trainer \
            or config.nproc_per_trial > 1:
        return None
    if config.rungs == "auto" and config.checkpoint_dir is None and storage_file(
            config.storage or default_storage_url()) is None:
        return None
    rungs = Rungs.for_budget(config.trial_budget, 0.0 if config.rungs == "on" else
                             MIN_FIRST_RUNG_S)
    return rungs.seconds if rungs else None


@dataclass(frozen=True)
class Prepared:
    study: optuna.Study
    prior: Prior
    storage_url: str
    store: CheckpointStore | None  # paused trials' checkpoints and kept models
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
        check_precision(workload, "fp32" if config.precision == AUTO else config.precision,
                        config.channels_last, device)
    saved = read_profile(config.profile, workload.name) if config.profile else None
    wanted = settings(workload, config)
    if wanted.rungs or wanted.keep_models:  # a server storage needs a shared folder
        base_folder(storage_url, config.checkpoint_dir)
    path = storage_file(storage_url)
    # before anything is swept as a zombie, no other tune may run on a SQLite file
    lock = StudyLock(path) if path and not supports_workers(storage_url) else None
    try:
        return _open_study(workload, config, wanted, device, emit, storage_url, lock, saved)
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _open_study(workload: Workload | ScriptWorkload, config: TuneConfig,
                wanted: WorkerSettings, device: torch.device, emit: EventCallback,
                storage_url: str, lock: StudyLock | None,
                saved_profile: ProfileResult | None) -> Prepared:
    storage = open_storage(storage_url)
    path = storage_file(storage_url)
    emit(TuneEvent("stage", "storage", f"study storage {path or mask_url(storage_url)}"))
    name = config.study_name or default_study_name(workload, config.target)
    exists = name in optuna.get_all_study_names(storage)
    if config.new_study and exists:
        name, exists = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}", False
    store = study_store(wanted, storage_url, name)
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
        study.set_user_attr(keys.SETTINGS, wanted.to_dict())
        study.set_user_attr(keys.PRIOR, prior.to_dict())
        for params in seed_trials(prior, workload.reference):
            study.enqueue_trial(params, skip_if_exists=True)
    return Prepared(study=study, prior=prior, storage_url=storage_url, store=store, lock=lock)


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
