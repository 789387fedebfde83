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
