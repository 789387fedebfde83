"""Promotion: the rungs' rules (rungs.py) applied to a study's trials.

A configuration may span several Optuna trials: the first trains to rung 0 and pauses
(PRUNED, prune reason 'paused at ...s', user attribute `paused_at_rung`); a promotion
queues a trial with the same parameters and `continues_trial` = the paused trial's
number, which resumes from its checkpoint, and so on up the rungs. Everything the rules
need is derived from the trials themselves, so any worker may promote, and a crash
loses nothing: a continuation that failed (a crash, a kill, Ctrl-C) leaves its paused
trial waiting, and the next pass promotes it again, up to MAX_FAILED_CONTINUATIONS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

import autobatch.keys as keys
from autobatch.search.checkpoints import CheckpointStore
from autobatch.search.rungs import Config, Rungs, dropped, promotions
from autobatch.search.study import reached_trials

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
PENDING = (TrialState.WAITING, TrialState.RUNNING)
# A paused trial whose continuations failed this often is left where it is.
MAX_FAILED_CONTINUATIONS = 2


def configs(trials: Sequence[FrozenTrial], store: CheckpointStore) -> list[Config]:
    """Each configuration once, as its latest finished trial."""
    later: dict[int, list[FrozenTrial]] = {}
    for trial in trials:
        source = trial.user_attrs.get(keys.CONTINUES)
        if source is not None:
            later.setdefault(source, []).append(trial)
    reached = {t.number for t in reached_trials(trials)}
    out = []
    for trial in trials:
        nexts = later.get(trial.number, [])
        if trial.state not in FINISHED or any(t.state in FINISHED for t in nexts):
            continue
        failed = sum(t.state == TrialState.FAIL for t in nexts)
        paused = trial.user_attrs.get(keys.PAUSED_AT_RUNG)
        out.append(Config(
            number=trial.number,
            curve=tuple((t, m) for t, m in trial.user_attrs.get(keys.CURVE, ())),
            trained_s=trial.user_attrs.get(keys.TRAIN_SECONDS, 0.0),
            reached_s=trial.value if trial.number in reached else None,
            paused_at=paused,
            promoted=(any(t.state in PENDING for t in nexts)
                      or failed >= MAX_FAILED_CONTINUATIONS),
            checkpoint=paused is not None and store.paused(trial.number).exists()))
    return out


def superseded(trials: Sequence[FrozenTrial]) -> list[int]:
    """Paused trials a finished continuation has taken over from."""
    return [source for t in trials if t.state in FINISHED
            and (source := t.user_attrs.get(keys.CONTINUES)) is not None]


@dataclass(frozen=True)
class Promoter:
    """Queues the promotions due and removes checkpoints no longer needed; run before
    each new trial is asked for (queued trials go first)."""

    rungs: Rungs
    target: float
    store: CheckpointStore

    def __call__(self, study: optuna.Study) -> list[int]:
        """Queue the continuations due; returns the paused trials promoted."""
        trials = study.get_trials(deepcopy=False)
        by_number = {t.number: t for t in trials}
        chosen = promotions(configs(trials, self.store), self.rungs, self.target)
        for number in chosen:
            source = by_number[number]
            study.enqueue_trial(source.params, user_attrs={
                keys.CONTINUES: number, keys.RUNG: source.user_attrs[keys.PAUSED_AT_RUNG] + 1})
        trials = study.get_trials(deepcopy=False)
        for number in (superseded(trials)
                       + dropped(configs(trials, self.store), self.rungs, self.target)):
            self.store.remove(self.store.paused(number))
        return chosen
