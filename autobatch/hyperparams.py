"""Hyperparams: the one value for everything a training recipe holds.

The search space produces it, a workload's reference recipe is one, a run trains
with one (RunConfig extends it), verification and the result file carry it, and the
trial attributes are derived from it here. A new recipe field (a schedule, gradient
accumulation, precision) is one new field below: every user reads and writes the
fields generically.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Literal

from autobatch.errors import ConfigError
from autobatch.schedule import CONSTANT, Schedule

OptimizerName = Literal["sgd", "adam"]
OPTIMIZER_NAMES = ("sgd", "adam")
Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS = ("fp32", "bf16", "fp16")
# What tune's --precision takes: auto profiles the precisions the device has and picks.
PRECISION_CHOICES = ("auto", *PRECISIONS)
AUTO = "auto"


def check_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value)
                                       and value > 0):
        raise ConfigError(f"{name} must be > 0, got {value!r}")


def check_momentum(name: str, value: float) -> None:
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value)
                                       and 0.0 <= value < 1.0):
        raise ConfigError(f"{name} must be in [0, 1), got {value!r}")


def check_lr_range(name: str, value: tuple[float, float]) -> None:
    low, high = value
    if not (0 < low <= high < math.inf):
        raise ConfigError(f"{name} must satisfy 0 < low <= high < inf, got {low}:{high}")


def check_momentum_range(name: str, value: tuple[float, float]) -> None:
    low, high = value
    if not (0 <= low <= high < 1):
        raise ConfigError(f"{name} must satisfy 0 <= low <= high < 1, got {low}:{high}")


def check_batch(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")


def parse_grad_accum(text: str | int) -> int | Literal["auto"]:
    """--grad-accum: 'auto' or a whole number >= 1 of micro-batches per optimizer step."""
    if isinstance(text, str) and text.strip().lower() == AUTO:
        return AUTO
    try:
        value = int(text) if not isinstance(text, bool) else None
    except ValueError:
        value = None
    if value is None or value < 1 or str(text).strip() not in (str(value), f"+{value}"):
        raise ConfigError(f"grad_accum must be 'auto' or a whole number >= 1, got {text!r}")
    return value


def check_precision_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def check_optimizer(name: str, value: str | None) -> None:
    if value not in (None, *OPTIMIZER_NAMES):
        raise ConfigError(f"{name} must be 'sgd' or 'adam', got {value!r}")


@dataclass(frozen=True, kw_only=True)
class Hyperparams:
    """One training recipe.

    batch_size: samples per optimizer step (>= 1), the global batch: per-device
    micro-batch x grad_accum x world_size. lr: learning rate (> 0), for that global
    batch. momentum: SGD momentum, or Adam's beta1, in [0, 1). optimizer: 'sgd', 'adam',
    or None for the workload's own optimizer factory. schedule: the LR over optimizer
    steps as a multiplier of `lr`, the peak (autobatch.schedule; default constant).
    grad_accum: micro-batches accumulated per optimizer step (>= 1). world_size:
    data-parallel processes (ranks) of the run (>= 1). precision: 'fp32', or autocast
    to 'bf16' or 'fp16' (with a gradient scaler). channels_last: 4-D inputs and the
    model in channels-last memory format.
    A field whose value is a nested value names its decoder in its metadata.
    """

    batch_size: int
    lr: float
    momentum: float = 0.9
    optimizer: OptimizerName | None = None
    schedule: Schedule = field(default=CONSTANT, metadata={"decode": Schedule.from_dict})
    grad_accum: int = 1
    world_size: int = 1
    precision: Precision = "fp32"
    channels_last: bool = False

    def __post_init__(self) -> None:
        check_batch("batch_size", self.batch_size)
        check_positive("lr", self.lr)
        check_momentum("momentum", self.momentum)
        check_optimizer("optimizer", self.optimizer)
        if not isinstance(self.schedule, Schedule):
            raise ConfigError(f"schedule must be a Schedule, got {self.schedule!r}")
        check_batch("grad_accum", self.grad_accum)
        check_batch("world_size", self.world_size)
        check_precision_choice("precision", self.precision, PRECISIONS)
        if not isinstance(self.channels_last, bool):
            raise ConfigError(f"channels_last must be true or false, got {self.channels_last!r}")
        split = self.grad_accum * self.world_size
        if self.batch_size % split:
            raise ConfigError(
                f"batch size {self.batch_size} is not divisible by world size "
                f"{self.world_size} x accumulation steps {self.grad_accum} = {split}")

    @property
    def micro_batch(self) -> int:
        """Samples per forward-backward pass on one device."""
        return self.batch_size // (self.grad_accum * self.world_size)

    @property
    def hparams(self) -> Hyperparams:
        """Just the recipe (a RunConfig without its target, budget and seed)."""
        return Hyperparams(**self.values())

    def values(self) -> dict[str, Any]:
        """The recipe's fields as they are (to_dict() turns nested values into dicts)."""
        return {f.name: getattr(self, f.name) for f in fields(Hyperparams)}

    def key(self) -> tuple[Any, ...]:
        """Equal for the same recipe up to float noise (deduplicates candidates)."""
        return tuple(round(v, 10) if isinstance(v, float) else v
                     for v in (getattr(self, f.name) for f in fields(Hyperparams)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self.hparams)

    def summary(self) -> str:
        """The recipe in one line, 'batch 64, LR 0.3, momentum 0.9', with the optimizer
        and schedule where they are not the defaults."""
        parts = [f"batch {self.batch_size}", f"LR {self.lr:.4g}", f"momentum {self.momentum:.3g}"]
        parts += [self.optimizer] if self.optimizer else []
        parts += [f"{self.schedule} schedule"] if self.schedule != CONSTANT else []
        return ", ".join(parts + self.numerics())

    def numerics(self) -> list[str]:
        """How the batch is computed, in words, where not the defaults: ranks x
        micro-batches, precision, memory format."""
        parts = []
        if self.grad_accum > 1 or self.world_size > 1:
            parts.append(f"{self.world_size} rank(s) x {self.grad_accum} micro-batch(es) "
                         f"of {self.micro_batch}")
        parts += [self.precision] if self.precision != "fp32" else []
        parts += ["channels-last"] if self.channels_last else []
        return parts

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hyperparams:
        """From to_dict()'s output or a trial's user attributes (other keys ignored)."""
        return Hyperparams(**{f.name: f.metadata.get("decode", _same)(data[f.name])
                              for f in fields(Hyperparams) if f.name in data})

    @classmethod
    def stored(cls, attrs: dict[str, Any]) -> Hyperparams | None:
        """The recipe in a trial's user attributes; None where it has none (a trial that
        failed, or is still running, before its suggestion was stored)."""
        required = (f.name for f in fields(Hyperparams) if f.default is MISSING)
        return cls.from_dict(attrs) if all(name in attrs for name in required) else None


def _same(value: Any) -> Any:
    return value


# The name a workload's reference recipe has always had.
Recipe = Hyperparams
