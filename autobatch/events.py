"""Progress events that tune() reports to its caller (the CLI renders them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import optuna

import autobatch.keys as keys
from autobatch.hyperparams import Hyperparams
from autobatch.schedule import CONSTANT


@dataclass(frozen=True)
class TuneEvent:
    """Progress: kind is 'stage' (name, message), 'trial' (a finished FrozenTrial) or
    'progress' (a step within a long stage, e.g. "batch 256: measurement 7 of 30":
    frequent, so a renderer may show only the latest)."""

    kind: Literal["stage", "trial", "verify", "progress"]
    name: str
    message: str = ""
    trial: optuna.trial.FrozenTrial | None = None


EventCallback = Callable[[TuneEvent], None]


def trial_row(trial: optuna.trial.FrozenTrial) -> tuple[str, ...]:
    """A finished trial as (number, state, batch, LR, momentum, time to target or reason)."""
    attrs = trial.user_attrs
    if trial.state.name == "COMPLETE" and attrs.get(keys.TARGET_REACHED):
        outcome = f"{trial.value:.3f}s"
    elif trial.state.name == "COMPLETE":
        outcome = f"not reached (best {attrs.get(keys.BEST_METRIC, 0):.3f})"
    else:
        outcome = keys.reason(attrs) or ""
    recipe = Hyperparams.stored(attrs)
    shown = (("-", "-", "-") if recipe is None
             else (str(recipe.batch_size), f"{recipe.lr:.3g}", f"{recipe.momentum:.3g}"))
    return (str(trial.number), trial.state.name.lower(), *shown, outcome)


def trial_line(trial: optuna.trial.FrozenTrial) -> str:
    """One plain progress line for a finished trial (its schedule named unless it is a
    constant LR without warmup, so seeds that differ only there do not read as repeats)."""
    *row, outcome = trial_row(trial)
    recipe = Hyperparams.stored(trial.user_attrs)
    shape = f" [{recipe.schedule}]" if recipe and recipe.schedule != CONSTANT else ""
    return "trial {} {:<9} batch {:>5} lr {:>9} momentum {:>6}".format(*row) + \
        f"{shape} {outcome}"
