"""The study around the objective: sampler, trial bookkeeping, convergence, contract.

The study minimises seconds of training to reach the target (see objective.py);
trials are pruned on the training-time axis (see pruning.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

import autobatch.keys as keys
from autobatch.errors import ConfigError

METRIC_NAME = "time_to_target_s"
# A trial "improves" the study only when it cuts the best time by this share; less
# is within the +-30% run-to-run noise of a shared machine.
MIN_IMPROVEMENT = 0.05


def censored_value(budget_s: float, target: float, best_metric: float | None) -> float:
    """The objective of a trial that stopped short of the target: budget * (1 +
    shortfall), above any success and ordered by how close it came."""
    shortfall = target - (best_metric if best_metric is not None else 0.0)
    return budget_s * (1.0 + max(shortfall, 0.0))


def reached_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """Completed trials that reached the target: their value is a time to target."""
    return [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None
            and t.user_attrs.get(keys.TARGET_REACHED)]


def converged(trials: Sequence[FrozenTrial], patience: int) -> bool:
    """True when a trial has reached the target and the last `patience` finished
    trials have not cut the best time to target by MIN_IMPROVEMENT (a trial paused at a
    rung has not finished its say: it does not count)."""
    finished = sorted((t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                       and keys.PAUSED_AT_RUNG not in t.user_attrs),
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
        storage.set_trial_user_attr(trial._trial_id, keys.FAIL_REASON, reason)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    return len(running)


def check_contract(study: optuna.Study, contract: dict[str, Any]) -> None:
    """Refuse to resume a study created for a different question."""
    stored = study.user_attrs.get(keys.CONTRACT)
    if stored is None:
        study.set_user_attr(keys.CONTRACT, contract)
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
        reason = keys.reason(trial.user_attrs)
        if trial.state == TrialState.PRUNED and reason:
            key = f"pruned ({reason.split(' at ')[0]})"
        elif trial.state == TrialState.FAIL and reason:
            key = f"fail ({reason})"
        elif trial.state == TrialState.COMPLETE and not trial.user_attrs.get(keys.TARGET_REACHED):
            key = "complete (target not reached)"
        counts[key] = counts.get(key, 0) + 1
    return counts

