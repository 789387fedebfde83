"""The objective: seconds of training to reach the target, trained by a TrialRunner.

Objective values (minimised):
- target reached: its time to target (measured seconds, or with time_mode
  'modeled', steps to target x the profiled time per step of its batch);
- target not reached within the trial budget: budget * (1 + shortfall), shortfall
  = target - best metric: finite, always above any success, and ordered by how
  close the trial came (censored);
- diverged, out of memory, pruned (see pruning.py), or slower than the best (a
  trial stops as soon as its training time exceeds the best completed time to
  target: it can no longer win): PRUNED, with the reason in the user attribute
  `prune_reason`. NaN never reaches Optuna.
- paused at a rung (with rungs, see rungs.py): PRUNED ('paused at ...s') with its
  checkpoint; a promotion continues it in a new trial, whose time to target counts
  the whole run's training.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import optuna
import torch

import autobatch.keys as keys
import autobatch.stop as stop
import autobatch.train.checkpoint as checkpoint
from autobatch.config import Budget, RunConfig, TimeMode
from autobatch.device import run_or_oom
from autobatch.errors import CheckpointError, ConfigError, StorageFault
from autobatch.search.checkpoints import CheckpointStore
from autobatch.search.extrapolate import predict_time_to_target
from autobatch.search.parallel_runner import check_nproc
from autobatch.search.prior import Prior
from autobatch.search.promotion import Promoter
from autobatch.search.pruning import PRUNE_WARMUP, TimeBucketPruning
from autobatch.search.rungs import Rungs
from autobatch.search.runners import TrialCrashed, TrialRunner, runner_for
from autobatch.search.settings import WorkerSettings
from autobatch.search.space import SearchSpace
from autobatch.search.study import best_value, censored_value, reached_trials
from autobatch.train import Pause, RunResult, Segment
from autobatch.workloads import Workload, load_workload

log = logging.getLogger(__name__)

# Bootstrap fits of a missed trial's curve: enough for an 80% interval, ~10 ms of numpy.
PREDICT_RESAMPLES = 100

def modeled_seconds(steps: int, batch_size: int, alpha: float, beta: float,
                    grad_accum: int = 1) -> float:
    """Steps x the profiled time per step: grad_accum micro-batches of B / grad_accum,
    each t(b) = alpha + beta * b."""
    return steps * (grad_accum * alpha + beta * batch_size)


@contextmanager
def interrupt_reason(trial: optuna.Trial) -> Iterator[None]:
    """Optuna marks a trial FAIL when Ctrl-C (or SIGTERM raised as one) or a storage
    fault ends it; say why (where the storage still takes it)."""
    try:
        yield
    except KeyboardInterrupt:
        trial.set_user_attr(keys.FAIL_REASON, "interrupted")
        raise
    except StorageFault as fault:
        try:
            trial.set_user_attr(keys.FAIL_REASON, fault.reason)
        except StorageFault:
            raise TrialAbandoned(fault) from None
        raise


class TrialAbandoned(BaseException):
    """A storage fault ended the trial and its reason could not be stored: the trial is
    left RUNNING, as by a process that died, for the next run (or a heartbeat) to fail,
    never FAIL without a reason. A BaseException, so that Optuna does not tell it."""

    def __init__(self, fault: StorageFault) -> None:
        super().__init__(str(fault))
        self.fault = fault


@dataclass(frozen=True, kw_only=True)
class Objective:
    """Train one suggested configuration; return its (possibly censored) time to target."""

    runner: TrialRunner
    space: SearchSpace
    target: float
    trial_budget_s: float
    bucket_base: float
    time_mode: TimeMode = "measured"
    step_model: tuple[float, float] | None = None  # (alpha, beta) for modeled time
    deadline: float = math.inf  # wall clock (epoch seconds) by which trials must end
    # Every trial trains from the same seed (common random numbers): trials then differ
    # by their configuration, not by a lucky initialisation or data order, and the
    # pruner's bar is not a lucky draw. Verification re-measures with fresh seeds.
    seed: int = 0
    world_size: int = 1  # data-parallel ranks per trial
    rungs: Rungs | None = None  # None: every trial trains straight through
    store: CheckpointStore | None = None  # paused trials' checkpoints (with rungs)
    keep_models: bool = False  # save each trial's model when it reaches the target

    def before_trial(self, study: optuna.Study) -> None:
        """Queue the promotions due (with rungs) and keep only the best trial's model,
        before the next trial is asked for."""
        if self.store is None:
            return
        if self.rungs is not None:
            Promoter(self.rungs, self.target, self.store)(study)
        if self.keep_models:
            reached = sorted(reached_trials(study.get_trials(deepcopy=False)),
                             key=lambda t: t.value)
            for trial in reached[1:]:
                self.store.remove(self.store.model(trial.number))

    def __call__(self, trial: optuna.Trial) -> float:
        with interrupt_reason(trial):
            return self.evaluate(trial)

    def evaluate(self, trial: optuna.Trial) -> float:
        stop.check()  # a stop that arrived while Optuna created this trial
        # the recipe says how many ranks it was trained on (ParallelRunner's world size)
        hparams = replace(self.space.suggest(trial), world_size=self.world_size)
        # the dashboard's Params are the space's coordinates (lr0, lr_scaling,
        # one_minus_momentum): the recipe they make is stored beside them, in words first
        trial.set_user_attr(keys.RECIPE, hparams.summary())
        for key, value in hparams.to_dict().items():
            trial.set_user_attr(key, value)
        trial.set_user_attr(keys.TRIAL_BUDGET_S, self.trial_budget_s)  # pruning.py reads it
        best = best_value(trial.study)
        cap = self.trial_budget_s
        if best is not None and self.time_mode == "measured":
            cap = min(cap, best)
        time_left = self.deadline - time.time()
        if time_left <= 0:
            prune(trial, "timeout")
        cap = min(cap, time_left)
        config = RunConfig.of(hparams, target=self.target, budget=Budget(seconds=cap),
                              seed=self.seed)
        pruning = TimeBucketPruning(trial, self.bucket_base,
                                    PRUNE_WARMUP * best if best is not None else math.inf,
                                    self.trial_budget_s, self.target)
        segment = self.segment(trial, pruning, cap)
        try:
            result = run_or_oom(lambda: self.runner.run(config, pruning, segment),
                                self.runner.device)
        except TrialCrashed as exc:
            trial.set_user_attr(keys.FAIL_REASON, exc.reason)
            trial.set_user_attr(keys.FAIL_DETAIL, str(exc))
            raise
        if result is None:
            prune(trial, "oom")
        record(trial, result)
        if result.stop_reason == "diverged":
            prune(trial, "diverged")
        if result.stop_reason == "stopped":
            prune(trial, pruning.reason)
        if result.stop_reason == "paused":
            trial.set_user_attr(keys.PAUSED_AT_RUNG, trial.user_attrs[keys.RUNG])
            prune(trial, f"paused at {result.train_seconds:.3g}s")
        if result.target_reached:
            measured = result.time_to_target_s
            modeled = (modeled_seconds(result.steps_to_target, hparams.batch_size,
                                       *self.step_model, hparams.grad_accum)
                       if self.step_model else None)
            trial.set_user_attr(keys.MEASURED_TIME_S, measured)
            if modeled is not None:
                trial.set_user_attr(keys.MODELED_TIME_S, modeled)
            return modeled if self.time_mode == "modeled" and modeled is not None else measured
        if cap == time_left:
            prune(trial, "timeout")
        if cap < self.trial_budget_s:
            prune(trial, "slower_than_best")
        return censored_value(self.trial_budget_s, self.target, result.best_metric)

    def segment(self, trial: optuna.Trial, pruning: TimeBucketPruning, cap: float) -> Segment:
        """The piece of the run this trial trains: from its paused trial's checkpoint
        (a promotion; from scratch when that checkpoint is gone or torn), to its rung."""
        if self.store is None or not self.runner.can_pause:
            return Segment()
        self.store.ensure()
        keep = self.store.model(trial.number) if self.keep_models else None
        if self.rungs is None:
            return Segment(keep_model=keep)
        rung = trial.user_attrs.get(keys.RUNG, 0)
        trial.set_user_attr(keys.RUNG, rung)
        at = self.rungs.pause_at(rung)
        pause = Pause(self.store.paused(trial.number), seconds=at) if at and at < cap else None
        source = trial.user_attrs.get(keys.CONTINUES)
        if source is None:
            return Segment(pause=pause, keep_model=keep)
        resume = self.store.paused(source)
        try:
            checkpoint.payload(resume)
        except CheckpointError as exc:
            log.warning("trial %d restarts from scratch: %s", trial.number, exc)
            trial.set_user_attr(keys.RESTARTED, str(exc))
            return Segment(pause=pause, keep_model=keep)
        paused = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == source)
        pruning.replay(paused.user_attrs.get(keys.CURVE, ()))
        return Segment(pause=pause, resume=resume, keep_model=keep)


def record(trial: optuna.Trial, result: RunResult) -> None:
    """Every measured figure as a user attribute (what the dashboard shows per trial)."""
    figures: dict[str, Any] = {
        keys.TARGET_REACHED: result.target_reached,
        keys.STOP_REASON: result.stop_reason,
        keys.STEPS: result.steps,
        keys.SAMPLES: result.samples,
        keys.EPOCHS: round(result.epochs, 4),
        keys.TRAIN_SECONDS: result.train_seconds,
        keys.EVAL_OVERHEAD_S: result.eval_seconds,
        keys.SAMPLES_PER_S: result.samples_per_s,
        keys.BEST_METRIC: result.best_metric,
        keys.STEPS_TO_TARGET: result.steps_to_target,
        keys.PEAK_MEMORY_BYTES: result.peak_memory_bytes,
    }
    for key, value in figures.items():
        if value is not None and not (isinstance(value, float) and not math.isfinite(value)):
            trial.set_user_attr(key, value)
    trial.set_user_attr(keys.CURVE, [[round(p.train_seconds, 4), round(p.metric, 4)]
                                     for p in result.trace])
    found = None if result.target_reached else predict_time_to_target(
        [p.train_seconds for p in result.trace], [p.metric for p in result.trace],
        result.config.target, resamples=PREDICT_RESAMPLES)
    if found is not None:
        trial.set_user_attr(keys.PREDICTED_TIME_S,
                            found.seconds if math.isfinite(found.seconds) else None)
        trial.set_user_attr(keys.PREDICTED_INTERVAL, [found.low, found.high])
        trial.set_user_attr(keys.PREDICTED_REACHABLE, found.reachable)


def prune(trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr(keys.PRUNE_REASON, reason)
    raise optuna.TrialPruned(reason)


def objective_from_study(study: optuna.Study, device: torch.device, deadline: float,
                         storage_url: str, checkpoint_dir: str | None = None,
                         nproc_per_trial: int | None = None
                         ) -> tuple[Objective, WorkerSettings]:
    """The objective a study was set up for, rebuilt from its stored settings;
    checkpoint_dir: where this machine sees the study's checkpoint folder, if not where
    the study says; nproc_per_trial: this worker's ranks per trial, if not the study's."""
    stored = study.user_attrs.get(keys.SETTINGS)
    if stored is None or keys.PRIOR not in study.user_attrs:
        raise ConfigError(f"study {study.study_name!r} was not set up by autobatch tune; "
                          "run autobatch tune --workers 0 first")
    settings = WorkerSettings.from_dict(stored)
    if nproc_per_trial is not None:
        check_nproc(nproc_per_trial, device, None)
        settings = replace(settings, nproc_per_trial=nproc_per_trial)
    workload = load_workload(**settings.workload)
    prior = Prior.from_dict(study.user_attrs[keys.PRIOR])
    store = study_store(settings, storage_url, study.study_name, checkpoint_dir)
    return make_objective(workload, prior, settings, device, deadline, store), settings


def study_store(settings: WorkerSettings, storage_url: str, study_name: str,
                checkpoint_dir: str | None = None) -> CheckpointStore | None:
    """The study's checkpoint folder, where its settings need one (rungs, kept models)."""
    if settings.rungs is None and not settings.keep_models:
        return None
    return CheckpointStore.for_study(storage_url, study_name,
                                     checkpoint_dir or settings.checkpoint_dir)


def make_objective(workload: Workload, prior: Prior, settings: WorkerSettings,
                   device: torch.device, deadline: float,
                   store: CheckpointStore | None = None) -> Objective:
    profile = prior.profile
    step_model = ((profile.alpha, profile.beta)
                  if profile.alpha is not None and profile.beta is not None else None)
    nproc = settings.nproc_per_trial
    return Objective(runner=runner_for(workload, device, nproc),
                     space=split_evenly(prior.space, nproc), world_size=nproc,
                     target=settings.target, trial_budget_s=settings.trial_budget_s,
                     bucket_base=prior.bucket_base, time_mode=settings.time_mode,
                     step_model=step_model, deadline=deadline, seed=settings.seed,
                     rungs=Rungs(settings.rungs) if settings.rungs else None, store=store,
                     keep_models=settings.keep_models)


def split_evenly(space: SearchSpace, nproc: int) -> SearchSpace:
    """The space's global batches that split evenly over nproc ranks."""
    batches = tuple(b for b in space.batch_sizes if b % nproc == 0)
    if not batches:
        raise ConfigError(f"no batch size of the study ({', '.join(map(str, space.batch_sizes))})"
                          f" splits evenly over --nproc-per-trial {nproc} ranks")
    return replace(space, batch_sizes=batches)
