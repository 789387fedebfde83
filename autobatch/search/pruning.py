"""Pruning on the training-time axis: trials are compared at equal *seconds*.

Each trial reports at fixed elapsed-training-time buckets `bucket_base * 1.25**k`,
with Optuna's step = the bucket's end in milliseconds of training, so the pruner (and
the dashboard's x axis) sets a batch-32 trial beside a batch-256 trial at the same
wall-clock. What it reports is the objective it would score if it stopped there short
of the target: censored_value(trial budget, target, best metric so far), in seconds.
Optuna stores a pruned trial's last intermediate value as its value, and
optuna-dashboard plots it on the objective's axis: a validation error (0.1 .. 0.9)
there would read as a time faster than the best; the censored value puts the pruned
trial with the trials that ran out of budget, above every success. It is linear in
the validation error at a given budget (budget x (target + error)), so the pruner
compares values divided by each trial's budget, which differ only by the error.

A trial is pruned when it is clearly behind the median of the trials that reached the
target at equal seconds, once it has trained PRUNE_WARMUP of the best time
('behind_winners'), or when it has stalled (no progress in the second half of its
training: 'plateau') after it has left its initial phase: its metric rose once above
its first evaluation, or it has trained PLATEAU_BUDGET_SHARE of the trial budget
(recurrent models sit near chance for their first seconds, and a plateau there says
nothing about the configuration).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial

import autobatch.keys as keys
from autobatch.search.study import censored_value, reached_trials
from autobatch.train import EvalPoint

BUCKET_RATIO = 1.25
# The plateau rule waits for this many bucket bases of training (noisy early metrics).
PLATEAU_MIN_BUCKETS = 8
# Without an improvement, a plateau counts only after this share of the trial budget.
PLATEAU_BUDGET_SHARE = 0.25
# An improvement: the metric rose this much above its first evaluation.
MIN_RISE = 0.02
# The pruner is asked only after this share of the best time to target: earlier
# metrics are noisy, and curves still cross.
PRUNE_WARMUP = 0.4
# How far (in validation error, or budgets: see above) a trial may trail the winners'
# median.
PRUNE_MARGIN = 0.1


def bucket_seconds(k: int, base: float) -> float:
    """Training seconds at which time bucket k closes."""
    return base * BUCKET_RATIO**k


def bucket_step(k: int, base: float) -> int:
    """Optuna's step for bucket k: its end in whole milliseconds of training."""
    return round(bucket_seconds(k, base) * 1000)


def bucket_reports(reported: int, best_before: float | None, point_seconds: float,
                   base: float) -> tuple[list[tuple[int, float]], int]:
    """(bucket, best metric) reports due when an evaluation arrives at `point_seconds`,
    and the number of buckets closed so far.

    Buckets closing before this evaluation get the best metric known before it
    (nothing was measured in between); buckets closing before the first evaluation
    get no report. `reported` is the number of buckets already closed.
    """
    reports = []
    k = reported
    while bucket_seconds(k, base) < point_seconds:
        if best_before is not None:
            reports.append((k, best_before))
        k += 1
    return reports, k


def left_initial_phase(history: list[tuple[float, float]], initial_s: float) -> bool:
    """True once the metric rose MIN_RISE above its first evaluation, or the run has
    trained initial_s seconds."""
    return bool(history) and (history[-1][0] >= initial_s
                              or max(m for _, m in history) >= history[0][1] + MIN_RISE)


def plateaued(history: list[tuple[float, float]], min_seconds: float,
              initial_s: float = 0.0) -> bool:
    """True when the best metric has not improved during the second half of training,
    once the run has left its initial phase (see left_initial_phase).

    history: (training seconds, metric) per evaluation. Scale-free: a trial stuck
    below the target stops at about twice the time its progress stopped.
    """
    if not history or history[-1][0] < min_seconds:
        return False
    if not left_initial_phase(history, initial_s):
        return False
    now = history[-1][0]
    best_by_half = max((m for t, m in history if t <= now / 2), default=None)
    return best_by_half is not None and best_by_half >= max(m for _, m in history)


class TimeBucketPruning:
    """run()'s on_eval callback: report error per time bucket, ask the pruner, and stop
    trials whose progress has stalled."""

    def __init__(self, trial: optuna.Trial, base: float, warmup_s: float,
                 budget_s: float, target: float) -> None:
        """budget_s: the trial budget (the censored value's, and see
        PLATEAU_BUDGET_SHARE); target: the metric to reach."""
        self.trial = trial
        self.base = base
        self.warmup_s = warmup_s
        self.budget_s = budget_s
        self.target = target
        self.initial_s = PLATEAU_BUDGET_SHARE * budget_s
        self.closed = 0
        self.history: list[tuple[float, float]] = []
        self.reason: str | None = None

    def replay(self, curve: Sequence[Sequence[float]]) -> None:
        """The (seconds, metric) curve of the paused run this trial continues: reported
        again, so this trial's intermediate values and rules see the whole run."""
        for seconds, metric in curve:
            self.observe(seconds, metric)

    def observe(self, seconds: float, metric: float) -> bool:
        """Report the buckets an evaluation at `seconds` closes; whether any closed."""
        best = max((m for _, m in self.history), default=None)
        due, self.closed = bucket_reports(self.closed, best, seconds, self.base)
        for k, value in due:
            self.trial.report(censored_value(self.budget_s, self.target, value),
                              step=bucket_step(k, self.base))
        self.history.append((seconds, metric))
        return bool(due)

    def __call__(self, point: EvalPoint) -> bool:
        due = self.observe(point.train_seconds, point.metric)
        if due and point.train_seconds >= self.warmup_s and self.trial.should_prune():
            self.reason = f"behind_winners at {point.train_seconds:.3g}s"
        elif plateaued(self.history, PLATEAU_MIN_BUCKETS * self.base, self.initial_s):
            self.reason = f"plateau at {point.train_seconds:.3g}s"
        return self.reason is not None


class BehindWinnersPruner(optuna.pruners.BasePruner):
    """Median pruning with a noise margin, on the time buckets.

    A trial is pruned when its error at a bucket (its value in budgets, see
    in_budgets) exceeds the median of the trials that reached the target at that
    bucket by more than `margin`. They are the
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
        winners = [in_budgets(t, step)
                   for t in reached_trials(study.get_trials(deepcopy=False))
                   if step in t.intermediate_values]
        return bool(winners) and in_budgets(trial, step) > (
            statistics.median(winners) + self.margin)


def in_budgets(trial: FrozenTrial, step: int) -> float:
    """The trial's intermediate value at `step` over its trial budget: target + error,
    comparable across trials run under different budgets (a resumed study's)."""
    return trial.intermediate_values[step] / trial.user_attrs[keys.TRIAL_BUDGET_S]


def pruner() -> optuna.pruners.BasePruner:
    return BehindWinnersPruner()


