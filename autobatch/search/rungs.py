"""Rungs on the training-time axis: which paused configurations train on.

A long workload cannot afford to train every configuration to its target. With rungs,
a configuration trains to the first rung (seconds of training), pauses with a
checkpoint, and trains on to the next rung only when it ranks in the top 1/ETA of the
configurations that have trained that long (asynchronous successive halving, Li et al.
2020): a promoted configuration resumes from its checkpoint, so no second is trained
twice, and its time to target is the same number an uninterrupted run would give.

Configurations are ranked at a rung by their time to target: the measured one where
they reached it, else the one extrapolated from their curve up to that rung
(extrapolate.py), with the best metric breaking ties among those that are predicted
never to reach it. Numbers in, numbers out: the study-facing half is promotion.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from autobatch.search.extrapolate import fit_curve

ETA = 3  # one in ETA configurations trains on to the next rung
RUNGS_BELOW_TOP = 3  # rungs at budget / ETA**3, / ETA**2, / ETA, then the whole budget
# Below this first rung (seconds of training) pausing does not pay for its checkpoint
# and restart; the study then trains each trial straight through.
MIN_FIRST_RUNG_S = 2.0
# Checkpoints kept per rung of configurations not (yet) promoted: the worse-ranked are
# deleted (they would need ETA times as many newcomers to climb back), so disk use is
# at most this many checkpoints per rung, plus one per running trial.
KEPT_PER_RUNG = 2 * ETA


@dataclass(frozen=True)
class Rungs:
    """Seconds of training at which configurations pause, ascending; the last is the
    trial budget, where a configuration ends instead of pausing."""

    seconds: tuple[float, ...]

    @classmethod
    def for_budget(cls, budget_s: float, shortest_s: float = MIN_FIRST_RUNG_S) -> Rungs | None:
        """ETA-spaced rungs up to the trial budget; None when the first would be shorter
        than `shortest_s`."""
        first = budget_s / ETA**RUNGS_BELOW_TOP
        if first < shortest_s:
            return None
        return cls(tuple(first * ETA**k for k in range(RUNGS_BELOW_TOP)) + (budget_s,))

    @property
    def top(self) -> int:
        return len(self.seconds) - 1

    def pause_at(self, rung: int) -> float | None:
        """Where a configuration at `rung` pauses; None at the top rung."""
        return self.seconds[rung] if rung < self.top else None


@dataclass(frozen=True, kw_only=True)
class Config:
    """One configuration as the rules see it: its latest trial's curve (the whole run's,
    a resumed run continues its trace), where it paused, and what became of it.

    paused_at: the rung it waits at (None: it is not waiting: running, finished or
    pruned); promoted: a continuation of it is queued or running; checkpoint: its
    paused state is on disk."""

    number: int  # its latest trial's number
    curve: tuple[tuple[float, float], ...]  # (training seconds, metric) per evaluation
    trained_s: float
    reached_s: float | None = None  # its time to target, where it reached the target
    paused_at: int | None = None
    promoted: bool = False
    checkpoint: bool = False


def score(config: Config, upto_s: float, target: float) -> tuple[float, float, float]:
    """Its rank key at a rung that ends at `upto_s` (lower ranks first): reached
    configurations first by their time to target, then by the time to target predicted
    from the curve up to the rung, then by the best metric there."""
    if config.reached_s is not None:
        return (0.0, config.reached_s, 0.0)
    points = [(t, m) for t, m in config.curve if t <= upto_s]
    best = max((m for _, m in points), default=0.0)
    fit = fit_curve([t for t, _ in points], [m for _, m in points])
    predicted = fit.time_to(target) if fit is not None else math.inf
    return (1.0, predicted, -best)


def ranked(configs: Sequence[Config], rungs: Rungs, rung: int, target: float) -> list[Config]:
    """The configurations that have trained through `rung` (or reached the target),
    best first."""
    upto = rungs.seconds[rung]
    there = [c for c in configs if c.reached_s is not None or c.trained_s >= upto
             or c.paused_at == rung]
    return sorted(there, key=lambda c: (score(c, upto, target), c.number))


def promotions(configs: Sequence[Config], rungs: Rungs, target: float) -> list[int]:
    """Latest-trial numbers of the paused configurations to resume now, highest rung
    first: those in the top floor(n / ETA) of the n configurations at their rung."""
    chosen: list[int] = []
    for rung in reversed(range(rungs.top)):
        order = ranked(configs, rungs, rung, target)
        chosen += [c.number for c in order[:len(order) // ETA]
                   if c.paused_at == rung and not c.promoted and c.checkpoint]
    return chosen


def dropped(configs: Sequence[Config], rungs: Rungs, target: float) -> list[int]:
    """Latest-trial numbers of paused configurations whose checkpoints can go: those
    ranked below the best KEPT_PER_RUNG waiting at their rung."""
    out: list[int] = []
    for rung in range(rungs.top):
        waiting = [c for c in ranked(configs, rungs, rung, target)
                   if c.paused_at == rung and not c.promoted and c.checkpoint]
        out += [c.number for c in waiting[KEPT_PER_RUNG:]]
    return out
