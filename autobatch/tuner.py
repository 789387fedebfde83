"""tune(): probe -> profile -> LR range -> study -> verification -> recommendation.

The measurements become the prior (autobatch/prior.py), the study searches the
space they define for the shortest time to target (autobatch/study.py), in this
process or in worker processes on a shared storage (autobatch/workers.py), and the
best few configurations are re-measured before one is recommended
(autobatch/verify.py).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import optuna
import torch

from autobatch import __version__
from autobatch.config import check_momentum, check_positive, check_target
from autobatch.dashboard import publish
from autobatch.data import check_data
from autobatch.device import device_name, resolve_device
from autobatch.errors import AutobatchError, ConfigError, TargetNotReachedError
from autobatch.events import EventCallback, TuneEvent
from autobatch.prior import Prior, measure_prior, seed_trials
from autobatch.result import TuneResult
from autobatch.storage import (
    default_storage_url,
    mask_url,
    open_storage,
    require_shared_storage,
    storage_file,
    supports_workers,
)
from autobatch.study import (
    METRIC_NAME,
    MIN_IMPROVEMENT,
    PRIOR_ATTR,
    TimeMode,
    check_contract,
    converged,
    fail_running,
    pruner,
    reached_trials,
    sampler,
    summarize,
)
from autobatch.verify import recommendation, unreliable, verify
from autobatch.workers import SETTINGS_ATTR, make_objective, run_trials, spawn_workers
from autobatch.workload import Workload

log = logging.getLogger(__name__)

# Share of a --timeout the study may use; the rest is kept for verification.
STUDY_SHARE = 0.7
DEFAULT_TRIALS = 40
# Finished trials in a row without a better time after which the study stops.
DEFAULT_PATIENCE = 12
DEFAULT_TRIAL_BUDGET_S = 60.0
# With a --timeout, one trial may take at most this share of it.
TRIAL_SHARE = 0.15


@dataclass(frozen=True, kw_only=True)
class TuneConfig:
    """What to tune and within which bounds. Times in seconds.

    n_trials counts finished trials of the study in total, so rerunning resumes;
    None with a timeout means as many as fit. The study stops sooner once `patience`
    finished trials in a row did not cut the best time to target by 5% (None: never).
    trial_budget_s: the most training time one trial may take (default: 60 s, or 15%
    of the timeout if less).
    lr_range: LR bounds at the anchor batch with momentum 0.9 (replaces the LR
    range test). verify: how many of the best configurations
    are re-measured, each `verify_runs` times with fresh seeds.
    """

    target: float
    n_trials: int | None = None
    timeout_s: float | None = None
    patience: int | None = DEFAULT_PATIENCE
    trial_budget_s: float | None = None
    storage: str | None = None
    study_name: str | None = None
    new_study: bool = False
    batch_size: int | None = None
    min_batch: int = 1
    max_batch: int | None = None
    lr: float | None = None
    lr_range: tuple[float, float] | None = None
    momentum: float | None = None
    momentum_range: tuple[float, float] = (0.0, 0.99)
    optimizer: Literal["sgd", "adam"] | None = None
    verify: int = 3
    verify_runs: int = 3
    time_mode: TimeMode = "measured"
    headroom: float = 0.1
    memory_limit: int | None = None
    compare: bool = True
    seed: int = 0
    workers: int = 1
    devices: tuple[str, ...] | None = None
    use_cache: bool = True
    artifact_dir: str | None = None  # dashboard artifacts; default: beside a SQLite file

    def __post_init__(self) -> None:
        check_target("target", self.target)
        if self.n_trials is not None and self.n_trials < 1:
            raise ConfigError(f"n_trials must be >= 1, got {self.n_trials}")
        if self.timeout_s is not None:
            check_positive("timeout", self.timeout_s)
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience must be >= 1 (or None: never stop early), got "
                              f"{self.patience}")
        if self.trial_budget_s is not None:
            check_positive("trial_budget", self.trial_budget_s)
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.min_batch < 1:
            raise ConfigError(f"min_batch must be >= 1, got {self.min_batch}")
        if self.max_batch is not None and self.max_batch < self.min_batch:
            raise ConfigError(
                f"min_batch {self.min_batch} is larger than max_batch {self.max_batch}")
        if self.lr is not None:
            check_positive("lr", self.lr)
        if self.lr_range is not None:
            low, high = self.lr_range
            if not (0 < low <= high):
                raise ConfigError(f"lr_range must satisfy 0 < low <= high, got {low}:{high}")
        if self.momentum is not None:
            check_momentum("momentum", self.momentum)
        low, high = self.momentum_range
        if not (0 <= low <= high < 1):
            raise ConfigError(
                f"momentum_range must satisfy 0 <= low <= high < 1, got {low}:{high}")
        if self.verify < 0 or self.verify_runs < 1:
            raise ConfigError(f"verify must be >= 0 and verify_runs >= 1, got "
                              f"{self.verify} and {self.verify_runs}")
        if self.time_mode not in ("measured", "modeled"):
            raise ConfigError(f"time_mode must be measured or modeled, got {self.time_mode!r}")
        if not 0 <= self.headroom < 0.9:
            raise ConfigError(f"headroom must be in [0, 0.9), got {self.headroom}")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")
        if self.workers != 1:
            require_shared_storage(self.storage or default_storage_url(),
                                   f"{self.workers} workers" if self.workers else
                                   "a study set up for `autobatch worker`s (--workers 0)")

    @property
    def trial_budget(self) -> float:
        if self.trial_budget_s is not None:
            return self.trial_budget_s
        default = DEFAULT_TRIAL_BUDGET_S
        return min(default, TRIAL_SHARE * self.timeout_s) if self.timeout_s else default



def default_study_name(workload: Workload, target: float) -> str:
    return f"{workload.name}-target{target:g}"


def contract(workload: Workload, config: TuneConfig) -> dict[str, Any]:
    """The settings a resumed study must share with the one it continues."""
    return {
        "workload": workload.name,
        "fingerprint": workload.fingerprint(),
        "target": config.target,
        "batch_size": config.batch_size,
        "min_batch": config.min_batch,
        "max_batch": config.max_batch,
        "lr": config.lr,
        "lr_range": list(config.lr_range) if config.lr_range else None,
        "momentum": config.momentum,
        "momentum_range": list(config.momentum_range),
        "optimizer": config.optimizer,
        "time_mode": config.time_mode,
        "direction": "minimize",
        "major_version": __version__.split(".")[0],
    }


def settings(workload: Workload, config: TuneConfig) -> dict[str, Any]:
    """What a worker process needs to rebuild the objective (see workers.py)."""
    return {"workload": workload.spec, "target": config.target,
            "trial_budget_s": config.trial_budget, "time_mode": config.time_mode,
            "optimizer": config.optimizer, "n_trials": total_trials(config),
            "patience": config.patience, "seed": config.seed}


def total_trials(config: TuneConfig) -> int | None:
    if config.n_trials is not None:
        return config.n_trials
    return None if config.timeout_s else DEFAULT_TRIALS


@dataclass(frozen=True)
class Prepared:
    study: optuna.Study
    prior: Prior
    storage_url: str


def prepare(workload: Workload, config: TuneConfig, device: torch.device,
            emit: EventCallback) -> Prepared:
    """Create or resume the study: contract check, zombies, prior, seeded trials."""
    storage_url = config.storage or default_storage_url()
    if config.workers != 1 and workload.spec is None:
        raise ConfigError("workers rebuild the workload by name: load it with "
                          "autobatch.load_workload() to use workers != 1")
    # unusable data fails here, before a study is created for it
    check_data(workload, config.batch_size or config.min_batch, workload.model_factory(),
               torch.device("cpu"))
    storage = open_storage(storage_url)
    path = storage_file(storage_url)
    emit(TuneEvent("stage", "storage", f"study storage {path or mask_url(storage_url)}"))
    name = config.study_name or default_study_name(workload, config.target)
    exists = name in optuna.get_all_study_names(storage)
    if config.new_study and exists:
        name, exists = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}", False
    # a new study is measured before it is created: nothing fits -> no half-made study
    prior = None if exists else measure_prior(workload, config, device, emit)
    study = optuna.create_study(storage=storage, study_name=name, direction="minimize",
                                load_if_exists=True, sampler=sampler(config.seed),
                                pruner=pruner())
    check_contract(study, contract(workload, config))
    if not supports_workers(storage_url):  # a single worker: anything RUNNING is dead
        zombies = fail_running(study, "zombie")
        if zombies:
            emit(TuneEvent("stage", "resume",
                           f"marked {zombies} abandoned running trial(s) FAIL"))
    with warnings.catch_warnings():  # experimental in Optuna, and exactly what we need
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([METRIC_NAME])
    if PRIOR_ATTR in study.user_attrs:
        prior = Prior.from_dict(study.user_attrs[PRIOR_ATTR])
        emit(TuneEvent("stage", "resume", f"resuming study {name!r} "
                       f"({len(study.trials)} trials so far)"))
    else:
        prior = prior or measure_prior(workload, config, device, emit)
        study.set_user_attr(SETTINGS_ATTR, settings(workload, config))
        study.set_user_attr(PRIOR_ATTR, prior.to_dict())
        for params in seed_trials(prior):
            study.enqueue_trial(params, skip_if_exists=True)
    return Prepared(study=study, prior=prior, storage_url=storage_url)


def tune(workload: Workload, config: TuneConfig, *, device: str | torch.device = "auto",
         on_event: EventCallback | None = None, started: float | None = None) -> TuneResult:
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
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    if config.workers == 0:
        raise ConfigError("tune() runs trials: use prepare() to set a study up for workers")
    prepared = prepare(workload, config, dev, emit)
    study, prior = prepared.study, prepared.prior
    study_deadline = (started + STUDY_SHARE * config.timeout_s if config.timeout_s
                      else math.inf)
    emit(TuneEvent("stage", "study", f"{total_trials(config) or 'open-ended'} trials, "
                   f"{config.workers} worker(s)"))
    if config.workers > 1:
        codes = spawn_workers(config.workers, prepared.storage_url, study.study_name,
                              deadline=study_deadline, devices=config.devices)
        failed = sorted(c for c in codes if c != 0)
        if failed and len(failed) == len(codes):
            raise AutobatchError(f"every worker failed (exit codes {failed}); their errors "
                                 "are above")
        if failed:
            emit(TuneEvent("stage", "workers", f"{len(failed)} of {len(codes)} workers "
                           f"failed (exit codes {failed}); the others finished the study"))
    else:
        objective = make_objective(workload, prior, settings(workload, config), dev,
                                   study_deadline)
        run_trials(study, objective, n_trials=total_trials(config), deadline=study_deadline,
                   exclusive=not supports_workers(prepared.storage_url),
                   patience=config.patience,
                   on_trial=lambda _, trial: emit(TuneEvent("trial", str(trial.number),
                                                            trial=trial)))
    if config.patience and converged(study.get_trials(deepcopy=False), config.patience):
        emit(TuneEvent("stage", "study", f"converged: the last {config.patience} trials did "
                       f"not cut the best time by {MIN_IMPROVEMENT:.0%}"))
    summary = summarize(study)
    reached = reached_trials(study.get_trials(deepcopy=False))
    if not reached:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(summary.items()))
        raise TargetNotReachedError(
            f"no trial reached {config.target:g} in study {study.study_name!r} ({counts}); "
            "raise --trial-budget, lower --target, or widen the bounds")
    candidates = verify(workload, config, prior, reached, dev, deadline, emit)
    best = recommendation(candidates)
    if warning := unreliable(best):
        emit(TuneEvent("stage", "warning", warning))
    result = TuneResult.build(
        workload=workload, config=config, device=device_name(dev), prior_probe=prior.probe,
        prior_profile=prior.profile, lr_range=prior.lr_range, b_star=prior.b_star,
        space=prior.space, candidates=candidates, best=best,
        study_name=study.study_name, storage=mask_url(prepared.storage_url),
        summary=summary, seconds=time.time() - started)
    try:
        # note, attributes and artifacts for the dashboard
        folder = publish(study, result, config.artifact_dir)
    except Exception as exc:  # a presentation problem must not discard a finished tune
        log.warning("could not publish the study note and artifacts: %s", exc, exc_info=True)
    else:
        if folder is not None:
            emit(TuneEvent("stage", "dashboard", f"artifacts in {folder}"))
    return result

