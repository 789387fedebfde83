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
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import optuna

import autobatch.keys as keys
import autobatch.stop as stop
from autobatch.config import Budget, RunConfig, TimeMode
from autobatch.device import run_or_oom
from autobatch.errors import StorageFault
from autobatch.search.extrapolate import predict_time_to_target
from autobatch.search.pruning import PRUNE_WARMUP, TimeBucketPruning
from autobatch.search.runners import TrialCrashed, TrialRunner
from autobatch.search.space import SearchSpace
from autobatch.search.study import best_value, censored_value
from autobatch.train import RunResult

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

    def __call__(self, trial: optuna.Trial) -> float:
        with interrupt_reason(trial):
            return self.evaluate(trial)

    def evaluate(self, trial: optuna.Trial) -> float:
        stop.check()  # a stop that arrived while Optuna created this trial
        hparams = self.space.suggest(trial)
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
        try:
            result = run_or_oom(lambda: self.runner.run(config, pruning), self.runner.device)
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
