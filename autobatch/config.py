"""Validated, frozen configuration objects shared by every stage.

Validation happens on construction, so a config that exists is a config that is
valid; messages name the field and the bad value.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from autobatch.errors import ConfigError

OptimizerName = Literal["sgd", "adam"]


def check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be > 0, got {value!r}")


def check_momentum(name: str, value: float) -> None:
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise ConfigError(f"{name} must be in [0, 1), got {value!r}")


def check_target(name: str, value: float) -> None:
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise ConfigError(f"{name} must be in (0, 1], got {value!r}")


_BUDGET_RE = re.compile(
    r"^\s*(?P<num>[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*"
    r"(?P<unit>s|sec|secs|seconds|m|min|mins|minutes|h|steps?|epochs?)?\s*$",
    re.IGNORECASE,
)
_SECONDS_PER_UNIT = {"s": 1, "sec": 1, "secs": 1, "seconds": 1, "m": 60, "min": 60,
                     "mins": 60, "minutes": 60, "h": 3600}


_BYTES_RE = re.compile(r"^\s*(?P<num>[0-9]*\.?[0-9]+)\s*(?P<unit>[KMGT]i?B?|B)?\s*$",
                       re.IGNORECASE)
_BYTE_POWERS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}


def parse_bytes(text: str) -> int:
    """Parse a memory size: '1.5GiB', '512MiB', '2GB' (decimal), '4G' or '4096' (bytes).

    Binary units (KiB, MiB, GiB, TiB, or a bare K/M/G/T) are powers of 1024; the
    SI spellings KB/MB/GB/TB are powers of 1000.
    """
    match = _BYTES_RE.match(text)
    if not match:
        raise ConfigError(f"memory size must look like 1.5GiB, 512MiB or 2GB, got {text!r}")
    unit = (match["unit"] or "").upper()
    prefix = unit.rstrip("B").rstrip("I")
    base = 1000 if unit.endswith("B") and "I" not in unit and prefix else 1024
    value = float(match["num"]) * base ** _BYTE_POWERS[prefix]
    if value < 1:
        raise ConfigError(f"memory size must be at least 1 byte, got {text!r}")
    return int(value)


@dataclass(frozen=True, kw_only=True)
class Budget:
    """How long one training run may last: training seconds, optimizer steps or epochs.

    Exactly one limit is set. Seconds count training time only (evaluation excluded).
    """

    seconds: float | None = None
    steps: int | None = None
    epochs: float | None = None

    def __post_init__(self) -> None:
        limits = [v for v in (self.seconds, self.steps, self.epochs) if v is not None]
        if len(limits) != 1:
            raise ConfigError("budget needs exactly one of seconds, steps or epochs")
        check_positive("budget", limits[0])

    @classmethod
    def parse(cls, text: str) -> Budget:
        """Parse '60s', '2m', '2000steps', '5epochs' (a bare number means seconds)."""
        match = _BUDGET_RE.match(text)
        if not match:
            raise ConfigError(
                f"budget must look like 60s, 10m, 2000steps or 5epochs, got {text!r}")
        num = float(match["num"])
        unit = (match["unit"] or "s").lower()
        if unit.startswith("step"):
            if num != int(num):
                raise ConfigError(f"budget steps must be a whole number, got {text!r}")
            return cls(steps=int(num))
        if unit.startswith("epoch"):
            return cls(epochs=num)
        return cls(seconds=num * _SECONDS_PER_UNIT[unit])

    def __str__(self) -> str:
        if self.seconds is not None:
            return f"{self.seconds:g}s"
        if self.steps is not None:
            return f"{self.steps}steps"
        return f"{self.epochs:g}epochs"


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """One training configuration.

    batch_size: samples per optimizer step (>= 1). lr: learning rate (> 0).
    momentum: SGD momentum, or Adam's beta1, in [0, 1). target: validation metric to
    reach, in (0, 1]; None trains for the whole budget. optimizer: None uses the
    workload's own optimizer factory. eval_resolution: relative precision of the
    time to target; evaluation runs whenever training time has grown by this
    fraction since the last evaluation.
    """

    batch_size: int
    lr: float
    momentum: float = 0.9
    target: float | None = None
    budget: Budget = Budget(seconds=60.0)
    seed: int = 0
    optimizer: OptimizerName | None = None
    eval_resolution: float = 0.05

    def __post_init__(self) -> None:
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) \
                or self.batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        check_positive("lr", self.lr)
        check_momentum("momentum", self.momentum)
        if self.target is not None:
            check_target("target", self.target)
        if self.optimizer not in (None, "sgd", "adam"):
            raise ConfigError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if not (0.0 < self.eval_resolution <= 1.0):
            raise ConfigError(
                f"eval_resolution must be in (0, 1], got {self.eval_resolution!r}")
