"""The search space over batch size, LR and momentum, built from measurements.

LR is coupled to batch size and momentum, so the sampler learns one relation
instead of one LR per batch:

    lr = lr0 * (B / B0) ** lr_scaling * (1 - momentum) / (1 - 0.9)

lr0 is the LR at the anchor batch B0 with momentum 0.9 (where the LR range test
ran); lr_scaling = 1 is the linear rule, 0.5 the square-root rule; the momentum
factor keeps the effective step lr / (1 - momentum) constant, which is what the
SGD noise scale lr * N / (B * (1 - momentum)) depends on. Momentum is searched as
1 - momentum on a log scale, so 0.9, 0.99 and 0.999 are equally easy to reach.

The LR is the schedule's peak. The schedule's shape is searched among `schedules`,
its horizon in epochs (log scale) for the decaying shapes, and its warmup coupled to
the batch as the linear rule's authors found it needed (Goyal et al. 2017):

    warmup epochs = warmup0 * max(1, B / B0), at most half the horizon

so above the anchor batch, where the coupled LR grows, the warmup grows with it.

The batch is the global batch (samples per optimizer step). Each trial computes it in
`grad_accum` micro-batches, or, with `micro_max` set (--grad-accum auto), in the
fewest micro-batches of at most micro_max samples that split it evenly, so the study
may search batches above what fits on the device at once.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import optuna

from autobatch.errors import ConfigError
from autobatch.hyperparams import (
    Hyperparams,
    OptimizerName,
    Precision,
    check_lr_range,
    check_momentum_range,
)
from autobatch.schedule import DECAYING, SCHEDULE_NAMES, Schedule, ScheduleName

ANCHOR_MOMENTUM = 0.9


def powers_of_two(low: int, high: int) -> list[int]:
    """Powers of two in [low, high]."""
    out, b = [], 1
    while b <= high:
        if b >= low:
            out.append(b)
        b *= 2
    return out


def nearest_power_of_two(value: float, candidates: list[int]) -> int:
    """The candidate closest to value on a log scale."""
    return min(candidates, key=lambda b: abs(math.log2(b) - math.log2(max(value, 1e-9))))


def predicted_best_batch(b_sat: float, b_crit: float) -> float:
    """B* = sqrt(B_sat * B_crit): where T(B) = S(B) * t(B) is smallest."""
    return math.sqrt(max(b_sat, 1.0) * max(b_crit, 1.0))


def anchor_lr0(hparams: Hyperparams, anchor_batch: int) -> float:
    """The lr0 that puts this recipe on the space's square-root rule: its LR carried to
    the anchor batch (sqrt rule) and momentum 0.9 (same effective step)."""
    return (hparams.lr * (1.0 - ANCHOR_MOMENTUM) / max(1.0 - hparams.momentum, 1e-6)
            * math.sqrt(anchor_batch / hparams.batch_size))


def accumulation(batch: int, micro_max: int) -> int:
    """The fewest micro-batches of at most micro_max samples that split `batch` evenly."""
    return next(k for k in range(1, batch + 1) if batch % k == 0 and batch // k <= micro_max)


def batch_candidates(*, min_batch: int, max_batch: int, b_star: float, knee: int) -> list[int]:
    """Batches worth trying: powers of two from B*/8 up to the largest that fits, capped
    at 4x B* or 2x the throughput knee, whichever is larger (past both, more batch buys
    neither throughput nor fewer steps). Never empty: falls back to max_batch."""
    low = max(min_batch, int(b_star / 8))
    high = min(max_batch, max(int(4 * b_star), 2 * knee))
    return powers_of_two(low, high) or [max_batch]


@dataclass(frozen=True, kw_only=True)
class SearchSpace:
    """What the study may choose. A field with one value (or a fixed value) is not searched."""

    batch_sizes: tuple[int, ...]
    anchor_batch: int
    lr_range: tuple[float, float] | None = None
    lr_fixed: float | None = None
    momentum_range: tuple[float, float] = (0.0, 0.99)
    momentum_fixed: float | None = None
    lr_scaling_range: tuple[float, float] = (0.0, 1.0)
    optimizer: OptimizerName | None = None  # fixed: None is the workload's own
    schedules: tuple[ScheduleName, ...] = ("constant",)
    horizon_range: tuple[float, float] | None = None  # epochs; decaying shapes need one
    warmup_max: float = 0.0  # warmup0's upper bound, in epochs (0: no warmup searched)
    grad_accum: int = 1  # micro-batches per step, unless micro_max chooses them per batch
    micro_max: int | None = None  # the largest micro-batch (--grad-accum auto)
    precision: Precision = "fp32"
    channels_last: bool = False

    def __post_init__(self) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ConfigError(f"batch sizes must be >= 1, got {self.batch_sizes!r}")
        if (self.lr_range is None) == (self.lr_fixed is None):
            raise ConfigError("give exactly one of an LR range or a fixed LR")
        if self.lr_range is not None:
            check_lr_range("LR range", self.lr_range)
        check_momentum_range("momentum range", self.momentum_range)
        if not self.schedules or not set(self.schedules) <= set(SCHEDULE_NAMES):
            raise ConfigError(f"schedules must be among {', '.join(SCHEDULE_NAMES)}, got "
                              f"{self.schedules!r}")
        if set(self.schedules) & set(DECAYING) and not (
                self.horizon_range and 0 < self.horizon_range[0] <= self.horizon_range[1]):
            raise ConfigError(f"decaying schedules need a horizon range 0 < low <= high "
                              f"(epochs), got {self.horizon_range!r}")

    def suggest(self, trial: optuna.Trial) -> Hyperparams:
        batch = (self.batch_sizes[0] if len(self.batch_sizes) == 1
                 else trial.suggest_categorical("batch_size", list(self.batch_sizes)))
        if self.momentum_fixed is not None:
            momentum = self.momentum_fixed
        else:
            low, high = self.momentum_range
            momentum = 1.0 - trial.suggest_float("one_minus_momentum", 1.0 - high, 1.0 - low,
                                                 log=True)
        schedule = self.suggest_schedule(trial, int(batch))
        if self.lr_fixed is not None:
            return Hyperparams(batch_size=int(batch), lr=self.lr_fixed, momentum=momentum,
                               optimizer=self.optimizer, schedule=schedule,
                               **self.numerics(int(batch)))
        lr0 = trial.suggest_float("lr0", *self.lr_range, log=True)
        scaling = trial.suggest_float("lr_scaling", *self.lr_scaling_range)
        return Hyperparams(batch_size=int(batch), momentum=momentum, optimizer=self.optimizer,
                           lr=self.coupled_lr(int(batch), lr0, scaling, momentum),
                           schedule=schedule, **self.numerics(int(batch)))

    def numerics(self, batch: int) -> dict[str, Any]:
        """How a trial at this global batch computes it: accumulation and precision."""
        grad_accum = (self.grad_accum if self.micro_max is None
                      else accumulation(batch, self.micro_max))
        return {"grad_accum": grad_accum, "precision": self.precision,
                "channels_last": self.channels_last}

    def suggest_schedule(self, trial: optuna.Trial, batch: int) -> Schedule:
        name = (self.schedules[0] if len(self.schedules) == 1
                else trial.suggest_categorical("schedule", list(self.schedules)))
        warmup0 = (trial.suggest_float("warmup0", 0.0, self.warmup_max)
                   if self.warmup_max > 0 else 0.0)
        horizon = (trial.suggest_float("horizon_epochs", *self.horizon_range, log=True)
                   if self.horizon_range else None)
        return self.schedule_of(name, batch, warmup0, horizon)

    def schedule_of(self, name: ScheduleName, batch: int, warmup0: float,
                    horizon: float | None) -> Schedule:
        """The schedule of these searched values (see the module docstring)."""
        warmup = warmup0 * max(1.0, batch / self.anchor_batch)
        if name in DECAYING:
            warmup = min(warmup, horizon / 2)
        spans = {"warmup": f"{warmup:.4g}epochs" if warmup > 0 else "0steps"}
        if name in DECAYING:
            spans["horizon"] = f"{horizon:.4g}epochs"
        return Schedule(name=name, **spans)

    def middle_horizon(self) -> float | None:
        """The geometric middle of the horizon range (seeded trials start there)."""
        return math.sqrt(self.horizon_range[0] * self.horizon_range[1]) \
            if self.horizon_range else None

    def coupled_lr(self, batch: int, lr0: float, scaling: float, momentum: float) -> float:
        return (lr0 * (batch / self.anchor_batch) ** scaling
                * (1.0 - momentum) / (1.0 - ANCHOR_MOMENTUM))

    def raw_params(self, *, batch: int, lr0: float, scaling: float,
                   momentum: float = ANCHOR_MOMENTUM, schedule: ScheduleName | None = None,
                   warmup0: float = 0.0, horizon: float | None = None) -> dict[str, Any]:
        """Optuna parameters that make suggest() return this configuration (to enqueue);
        schedule: the first of the space's shapes, horizon: the middle of its range,
        unless given."""
        params: dict[str, Any] = {}
        if len(self.batch_sizes) > 1:
            params["batch_size"] = batch
        if self.momentum_fixed is None:
            low, high = self.momentum_range
            params["one_minus_momentum"] = min(max(1.0 - momentum, 1.0 - high), 1.0 - low)
        if self.lr_fixed is None:
            params["lr0"] = min(max(lr0, self.lr_range[0]), self.lr_range[1])
            params["lr_scaling"] = scaling
        if len(self.schedules) > 1:
            params["schedule"] = schedule or self.schedules[0]
        if self.warmup_max > 0:
            params["warmup0"] = min(max(warmup0, 0.0), self.warmup_max)
        if self.horizon_range:
            low, high = self.horizon_range
            params["horizon_epochs"] = min(max(horizon or self.middle_horizon(), low), high)
        return params

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        fields = dict(data)
        for key in ("batch_sizes", "lr_range", "momentum_range", "lr_scaling_range",
                    "schedules", "horizon_range"):
            if fields.get(key) is not None:
                fields[key] = tuple(fields[key])
        return cls(**fields)
