"""Change course when the first trials all end the same way.

Every trial of a study drawn inside a wrong LR range stalls ('plateau') or blows up
('diverged'), and the study would spend its whole timeout on that one failure mode.
Once the first FIRST_TRIALS trials have finished, all one way, the evidence points a
direction: stalls call for larger LRs (or longer trials), divergence for smaller ones.
The study is told so, and the next trials are queued at that end of the searched range.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

import autobatch.keys as keys
from autobatch.events import EventCallback, TuneEvent
from autobatch.search.space import SearchSpace

FIRST_TRIALS = 6
ONE_WAY = ("plateau", "diverged")


def ending(trial: FrozenTrial) -> str:
    """How a finished trial ended: 'reached', a prune reason's first word, or 'budget'."""
    if trial.user_attrs.get(keys.TARGET_REACHED):
        return "reached"
    if trial.state == TrialState.PRUNED:
        return str(trial.user_attrs.get(keys.PRUNE_REASON, "pruned")).split()[0]
    return "budget"


def one_way(trials: Sequence[FrozenTrial], first: int = FIRST_TRIALS) -> str | None:
    """'plateau' or 'diverged' when the first `first` finished trials all ended so."""
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    if len(finished) < first:
        return None
    endings = {ending(t) for t in finished[:first]}
    return endings.pop() if len(endings) == 1 and endings <= set(ONE_WAY) else None


def new_course(space: SearchSpace, way: str) -> list[dict[str, Any]]:
    """Trials at the end of the LR range that the evidence points to (none: LR fixed)."""
    if space.lr_range is None:
        return []
    low, high = space.lr_range
    lrs = (high, high / 3) if way == "plateau" else (low, low * 3)
    return [space.raw_params(batch=space.anchor_batch, lr0=lr, scaling=0.5) for lr in lrs]


class CourseWatch:
    """run_trials()'s on_trial callback (after `emit`): checks once, after the first
    FIRST_TRIALS trials, and changes course when they all ended one way."""

    def __init__(self, space: SearchSpace, emit: EventCallback) -> None:
        self.space = space
        self.emit = emit
        self.done = False

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.emit(TuneEvent("trial", str(trial.number), trial=trial))
        if self.done:
            return
        trials = study.get_trials(deepcopy=False)
        if sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) \
                < FIRST_TRIALS:
            return
        self.done = True
        way = one_way(trials)
        if way is None:
            return
        queued = new_course(self.space, way)
        for params in queued:
            study.enqueue_trial(params, skip_if_exists=True)
        hint = ("the LR range may be too low, or the trials too short (raise --trial-budget)"
                if way == "plateau" else "the LR range may be too high")
        self.emit(TuneEvent("stage", "warning", (
            f"the first {FIRST_TRIALS} trials all ended '{way}': {hint}; "
            + (f"trying {len(queued)} at the {'top' if way == 'plateau' else 'bottom'} of "
               "the LR range next" if queued else "the LR is fixed: nothing to change"))))
