"""The Optuna study: objective = seconds of training to reach the target.

Trials are compared at equal *seconds*, not equal steps: the validation error is
reported at fixed elapsed-training-time buckets `bucket_base * 1.25**k`, with
Optuna's step = the bucket's end in milliseconds of training, so the pruner (and
the dashboard's x axis) sets a batch-32 trial beside a batch-256 trial at the same
wall-clock. A trial also stops as soon as its training
time exceeds the best completed time to target: it can no longer win.

Objective values (minimised):
- target reached: its time to target (measured seconds, or with time_mode
  'modeled', steps to target x the profiled time per step of its batch);
- target not reached within the trial budget: budget * (1 + shortfall), shortfall
  = target - best metric: finite, always above any success, and ordered by how
  close the trial came (censored);
- diverged, out of memory, pruned (clearly behind the median of the trials that
  reached the target, at equal seconds, once it has trained PRUNE_WARMUP of the best
  time: 'behind_winners'), stalled
  (no progress in the second half of its training: 'plateau'), or slower than the
  best: PRUNED, with the reason in the user attribute `prune_reason`. NaN never
  reaches Optuna.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from autobatch.config import Budget, RunConfig
from autobatch.device import is_oom, release_memory
from autobatch.errors import ConfigError
from autobatch.space import SearchSpace
from autobatch.train import EvalPoint, RunResult, run
from autobatch.workload import Workload

log = logging.getLogger(__name__)

TimeMode = Literal["measured", "modeled"]
METRIC_NAME = "time_to_target_s"
BUCKET_RATIO = 1.25
# The plateau rule waits for this many bucket bases of training (noisy early metrics).
PLATEAU_MIN_BUCKETS = 8
# The pruner is asked only after this share of the best time to target: earlier
# metrics are noisy, and curves still cross.
PRUNE_WARMUP = 0.4
# How far (in validation error) a trial may trail the winners' median.
PRUNE_MARGIN = 0.1
# A trial "improves" the study only when it cuts the best time by this share; less
# is within the +-30% run-to-run noise of a shared machine.
MIN_IMPROVEMENT = 0.05
CONTRACT_ATTR = "autobatch_contract"
PRIOR_ATTR = "autobatch_prior"


def bucket_seconds(k: int, base: float) -> float:
    """Training seconds at which time bucket k closes."""
    return base * BUCKET_RATIO**k


def bucket_step(k: int, base: float) -> int:
    """Optuna's step for bucket k: its end in whole milliseconds of training."""
    return round(bucket_seconds(k, base) * 1000)


def bucket_reports(reported: int, best_before: float | None, point_seconds: float,
                   base: float) -> tuple[list[tuple[int, float]], int]:
    """(bucket, error) reports due when an evaluation arrives at `point_seconds`, and
    the number of buckets closed so far.

    Buckets closing before this evaluation get the best metric known before it
    (nothing was measured in between); buckets closing before the first evaluation
    get no report. `reported` is the number of buckets already closed.
    """
    reports = []
    k = reported
    while bucket_seconds(k, base) < point_seconds:
        if best_before is not None:
            reports.append((k, 1.0 - best_before))
        k += 1
    return reports, k


def censored_value(budget_s: float, target: float, best_metric: float | None) -> float:
    """The objective of a trial that ran out of budget: budget * (1 + shortfall)."""
    shortfall = target - (best_metric if best_metric is not None else 0.0)
    return budget_s * (1.0 + max(shortfall, 0.0))


def modeled_seconds(steps: int, batch_size: int, alpha: float, beta: float) -> float:
    """Steps x the profiled time per step t(B) = alpha + beta * B."""
    return steps * (alpha + beta * batch_size)


def plateaued(history: list[tuple[float, float]], min_seconds: float) -> bool:
    """True when the best metric has not improved during the second half of training.

    history: (training seconds, metric) per evaluation. Scale-free: a trial stuck
    below the target stops at about twice the time its progress stopped.
    """
    if not history or history[-1][0] < min_seconds:
        return False
    now = history[-1][0]
    best_by_half = max((m for t, m in history if t <= now / 2), default=None)
    return best_by_half is not None and best_by_half >= max(m for _, m in history)


class TimeBucketPruning:
    """run()'s on_eval callback: report error per time bucket, ask the pruner, and stop
    trials whose progress has stalled."""

    def __init__(self, trial: optuna.Trial, base: float, warmup_s: float) -> None:
        self.trial = trial
        self.base = base
        self.warmup_s = warmup_s
        self.closed = 0
        self.history: list[tuple[float, float]] = []
        self.reason: str | None = None

    def __call__(self, point: EvalPoint) -> bool:
        best = max((m for _, m in self.history), default=None)
        due, self.closed = bucket_reports(self.closed, best, point.train_seconds, self.base)
        for k, error in due:
            self.trial.report(error, step=bucket_step(k, self.base))
        self.history.append((point.train_seconds, point.metric))
        if due and point.train_seconds >= self.warmup_s and self.trial.should_prune():
            self.reason = f"behind_winners at {point.train_seconds:.3g}s"
        elif plateaued(self.history, PLATEAU_MIN_BUCKETS * self.base):
            self.reason = f"plateau at {point.train_seconds:.3g}s"
        return self.reason is not None


@contextmanager
def interrupt_reason(trial: optuna.Trial) -> Iterator[None]:
    """Optuna marks a trial FAIL when Ctrl-C (or SIGTERM raised as one) ends it; say why."""
    try:
        yield
    except KeyboardInterrupt:
        trial.set_user_attr("fail_reason", "interrupted")
        raise


@dataclass(frozen=True, kw_only=True)
class Objective:
    """Train one suggested configuration; return its (possibly censored) time to target."""

    workload: Workload
    space: SearchSpace
    target: float
    trial_budget_s: float
    device: torch.device
    bucket_base: float
    time_mode: TimeMode = "measured"
    step_model: tuple[float, float] | None = None  # (alpha, beta) for modeled time
    optimizer: str | None = None
    deadline: float = math.inf  # wall clock (epoch seconds) by which trials must end
    # Every trial trains from the same seed (common random numbers): trials then differ
    # by their configuration, not by a lucky initialisation or data order, and the
    # pruner's bar is not a lucky draw. Verification re-measures with fresh seeds.
    seed: int = 0

    def __call__(self, trial: optuna.Trial) -> float:
        with interrupt_reason(trial):
            return self.evaluate(trial)

    def evaluate(self, trial: optuna.Trial) -> float:
        params = self.space.suggest(trial)
        trial.set_user_attr("batch_size", params.batch_size)
        trial.set_user_attr("lr", params.lr)
        trial.set_user_attr("momentum", params.momentum)
        best = best_value(trial.study)
        cap = self.trial_budget_s
        if best is not None and self.time_mode == "measured":
            cap = min(cap, best)
        time_left = self.deadline - time.time()
        if time_left <= 0:
            prune(trial, "timeout")
        cap = min(cap, time_left)
        config = RunConfig(batch_size=params.batch_size, lr=params.lr,
                           momentum=params.momentum, target=self.target,
                           budget=Budget(seconds=cap), seed=self.seed,
                           optimizer=self.optimizer)
        pruning = TimeBucketPruning(trial, self.bucket_base,
                                    PRUNE_WARMUP * best if best is not None else math.inf)
        try:
            result = run(self.workload, config, device=self.device, on_eval=pruning)
        except Exception as exc:
            if not is_oom(exc):
                raise
            result = None
        if result is None:  # released here, outside the except block that pinned the tensors
            release_memory(self.device)
            prune(trial, "oom")
        record(trial, result)
        if result.stop_reason == "diverged":
            prune(trial, "diverged")
        if result.stop_reason == "stopped":
            prune(trial, pruning.reason)
        if result.target_reached:
            measured = result.time_to_target_s
            modeled = (modeled_seconds(result.steps_to_target, params.batch_size,
                                       *self.step_model) if self.step_model else None)
            trial.set_user_attr("measured_time_s", measured)
            if modeled is not None:
                trial.set_user_attr("modeled_time_s", modeled)
            return modeled if self.time_mode == "modeled" and modeled is not None else measured
        if cap == time_left:
            prune(trial, "timeout")
        if cap < self.trial_budget_s:
            prune(trial, "slower_than_best")
        return censored_value(self.trial_budget_s, self.target, result.best_metric)


def record(trial: optuna.Trial, result: RunResult) -> None:
    """Every measured figure as a user attribute (what the dashboard shows per trial)."""
    figures: dict[str, Any] = {
        "target_reached": result.target_reached,
        "stop_reason": result.stop_reason,
        "steps": result.steps,
        "samples": result.samples,
        "epochs": round(result.epochs, 4),
        "train_seconds": result.train_seconds,
        "eval_overhead_s": result.eval_seconds,
        "samples_per_s": result.samples_per_s,
        "best_metric": result.best_metric,
        "steps_to_target": result.steps_to_target,
        "peak_memory_bytes": result.peak_memory_bytes,
    }
    for key, value in figures.items():
        if value is not None and not (isinstance(value, float) and not math.isfinite(value)):
            trial.set_user_attr(key, value)
    trial.set_user_attr("curve", [[round(p.train_seconds, 4), round(p.metric, 4)]
                                  for p in result.trace])


def prune(trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr("prune_reason", reason)
    raise optuna.TrialPruned(reason)


def reached_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """Completed trials that reached the target: their value is a time to target."""
    return [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None
            and t.user_attrs.get("target_reached")]


def converged(trials: Sequence[FrozenTrial], patience: int) -> bool:
    """True when a trial has reached the target and the last `patience` finished
    trials have not cut the best time to target by MIN_IMPROVEMENT."""
    finished = sorted((t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)),
                      key=lambda t: t.datetime_complete)
    reached = {t.number for t in reached_trials(finished)}
    best, since = math.inf, 0
    for trial in finished:
        value = trial.value if trial.number in reached else math.inf
        since = 0 if value < best * (1 - MIN_IMPROVEMENT) else since + 1
        best = min(best, value)
    return math.isfinite(best) and since >= patience


def sampler(seed: int | None) -> optuna.samplers.BaseSampler:
    # multivariate: batch, LR and momentum interact; a joint model learns that.
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=8)


class BehindWinnersPruner(optuna.pruners.BasePruner):
    """Median pruning with a noise margin, on the time buckets.

    A trial is pruned when its error at a bucket exceeds the median error of the
    trials that reached the target at that bucket by more than `margin`. They are the
    winners so far (each beat the best before it), so one is enough to compare with;
    the margin keeps a configuration as good as theirs from being cut for a worse seed
    (on MNIST-1D, one configuration's accuracy at 40% of its time to target spans 0.18
    across seeds). TimeBucketPruning asks only after the warm-up.
    """

    def __init__(self, margin: float = PRUNE_MARGIN) -> None:
        self.margin = margin

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        winners = [t.intermediate_values[step]
                   for t in reached_trials(study.get_trials(deepcopy=False))
                   if step in t.intermediate_values]
        return bool(winners) and trial.intermediate_values[step] > (
            statistics.median(winners) + self.margin)


def pruner() -> optuna.pruners.BasePruner:
    return BehindWinnersPruner()


def best_value(study: optuna.Study) -> float | None:
    """The best completed value that reached the target, if any."""
    values = [t.value for t in reached_trials(study.get_trials(deepcopy=False))]
    return min(values) if values else None


def fail_running(study: optuna.Study, reason: str) -> int:
    """Mark every RUNNING trial FAIL with `fail_reason`; only safe with a single worker.

    'zombie': left by a process that died; 'interrupted': this process was stopped
    between Optuna creating a trial and the objective starting it.
    """
    storage = study._storage
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in running:
        storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    return len(running)


def check_contract(study: optuna.Study, contract: dict[str, Any]) -> None:
    """Refuse to resume a study created for a different question."""
    stored = study.user_attrs.get(CONTRACT_ATTR)
    if stored is None:
        study.set_user_attr(CONTRACT_ATTR, contract)
        return
    diffs = [f"{key}: {stored.get(key)!r} -> {contract.get(key)!r}"
             for key in sorted(set(stored) | set(contract)) if stored.get(key) != contract.get(key)]
    if diffs:
        raise ConfigError(
            f"study {study.study_name!r} was created with different settings ("
            + "; ".join(diffs) + "); pass --new-study to start a new study")


def summarize(study: optuna.Study) -> dict[str, int]:
    """Trial counts by state, and pruned/failed trials by reason."""
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        key = trial.state.name.lower()
        reason = trial.user_attrs.get("prune_reason") or trial.user_attrs.get("fail_reason")
        if trial.state == TrialState.PRUNED and reason:
            key = f"pruned ({reason.split(' at ')[0]})"
        elif trial.state == TrialState.FAIL and reason:
            key = f"fail ({reason})"
        elif trial.state == TrialState.COMPLETE and not trial.user_attrs.get("target_reached"):
            key = "complete (target not reached)"
        counts[key] = counts.get(key, 0) + 1
    return counts

