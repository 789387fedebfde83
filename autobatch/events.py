"""Progress events that tune() reports to its caller (the CLI renders them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import optuna


@dataclass(frozen=True)
class TuneEvent:
    """Progress: kind is 'stage' (name, message) or 'trial' (a finished FrozenTrial)."""

    kind: Literal["stage", "trial", "verify"]
    name: str
    message: str = ""
    trial: optuna.trial.FrozenTrial | None = None


EventCallback = Callable[[TuneEvent], None]


def trial_row(trial: optuna.trial.FrozenTrial) -> tuple[str, ...]:
    """A finished trial as (number, state, batch, LR, momentum, time to target or reason)."""
    attrs = trial.user_attrs
    if trial.state.name == "COMPLETE" and attrs.get("target_reached"):
        outcome = f"{trial.value:.3f}s"
    elif trial.state.name == "COMPLETE":
        outcome = f"not reached (best {attrs.get('best_metric', 0):.3f})"
    else:
        outcome = attrs.get("prune_reason") or attrs.get("fail_reason") or ""
    return (str(trial.number), trial.state.name.lower(), str(attrs.get("batch_size", "-")),
            f"{attrs['lr']:.3g}" if "lr" in attrs else "-",
            f"{attrs['momentum']:.3g}" if "momentum" in attrs else "-", outcome)


def trial_line(trial: optuna.trial.FrozenTrial) -> str:
    """One plain progress line for a finished trial."""
    return "trial {} {:<9} batch {:>5} lr {:>9} momentum {:>6} {}".format(*trial_row(trial))
