"""Validated, frozen configuration objects shared by every stage.

Validation happens on construction, so a config that exists is a config that is
valid; messages name the field and the bad value.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from autobatch.errors import ConfigError
from autobatch.hyperparams import (
    AUTO,
    PRECISION_CHOICES,
    Hyperparams,
    OptimizerName,
    check_batch,
    check_lr_range,
    check_momentum,
    check_momentum_range,
    check_optimizer,
    check_positive,
    check_precision_choice,
)
from autobatch.schedule import SCHEDULE_NAMES
from autobatch.storage import default_storage_url, require_shared_storage

TimeMode = Literal["measured", "modeled"]
RungsChoice = Literal["auto", "on", "off"]
RUNGS_CHOICES = ("auto", "on", "off")

# Share of a --timeout the study may use; the rest is kept for verification.
STUDY_SHARE = 0.7
# The most of a --timeout kept for re-measuring when the finalists are slow.
VERIFY_MAX_SHARE = 0.5
DEFAULT_TRIALS = 40
# Finished trials in a row without a better time after which the study stops.
DEFAULT_PATIENCE = 12
DEFAULT_TRIAL_BUDGET_S = 60.0
# With a --timeout, one trial may take at most this share of it.
TRIAL_SHARE = 0.15


def check_headroom(name: str, value: float) -> None:
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and 0.0 <= value < 0.9):
        raise ConfigError(f"{name} must be in [0, 0.9), got {value!r}")


def check_memory_limit(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{name} must be a number of bytes >= 1, got {value!r}")


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
class RunConfig(Hyperparams):
    """One training run: a recipe (the Hyperparams fields) and how it is trained.

    target: validation metric to reach, in (0, 1]; None trains for the whole budget.
    eval_resolution: relative precision of the time to target; evaluation runs
    whenever training time has grown by this fraction since the last evaluation.
    """

    target: float | None = None
    budget: Budget = Budget(seconds=60.0)
    seed: int = 0
    eval_resolution: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.target is not None:
            check_target("target", self.target)
        if not (0.0 < self.eval_resolution <= 1.0):
            raise ConfigError(
                f"eval_resolution must be in (0, 1], got {self.eval_resolution!r}")

    @classmethod
    def of(cls, hparams: Hyperparams, **run: Any) -> RunConfig:
        """A run of the recipe `hparams`; `run` sets target, budget, seed, eval_resolution."""
        return cls(**hparams.values(), **run)


SCHEDULE_CHOICES = ("auto", *SCHEDULE_NAMES)
NUMERICS = ("grad_accum", "precision", "channels_last")


@dataclass(frozen=True, kw_only=True)
class SearchBounds:
    """What the user fixed or bounded; the study searches the rest. None: not fixed.

    Batches are global batches (samples per optimizer step). schedule: the LR
    schedule's shape, or 'auto' to search over them all. grad_accum: micro-batches per
    step of every trial, or 'auto': per trial the fewest that make its micro-batch fit
    (the study may then search batches above the probe's). precision: every trial's,
    or 'auto': the one with the least profiled time per sample. channels_last: train
    4-D inputs and the model in channels-last memory format."""

    batch_size: int | None = None
    min_batch: int = 1
    max_batch: int | None = None
    lr: float | None = None
    lr_range: tuple[float, float] | None = None
    momentum: float | None = None
    momentum_range: tuple[float, float] = (0.0, 0.99)
    optimizer: OptimizerName | None = None
    schedule: str = "auto"
    grad_accum: int | Literal["auto"] = 1
    precision: str = "fp32"
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.grad_accum != AUTO:
            check_batch("grad_accum", self.grad_accum)
            if self.batch_size and self.batch_size % self.grad_accum:
                raise ConfigError(f"batch size {self.batch_size} is not divisible by "
                                  f"accumulation steps {self.grad_accum}")
        check_precision_choice("precision", self.precision, PRECISION_CHOICES)
        if self.schedule not in SCHEDULE_CHOICES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULE_CHOICES)}, got "
                              f"{self.schedule!r}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.min_batch < 1:
            raise ConfigError(f"min_batch must be >= 1, got {self.min_batch}")
        if self.max_batch is not None and self.max_batch < self.min_batch:
            raise ConfigError(
                f"min_batch {self.min_batch} is larger than max_batch {self.max_batch}")
        if self.lr is not None:
            check_positive("lr", self.lr)
        if self.lr_range is not None:
            check_lr_range("lr_range", self.lr_range)
        if self.momentum is not None:
            check_momentum("momentum", self.momentum)
        check_momentum_range("momentum_range", self.momentum_range)
        check_optimizer("optimizer", self.optimizer)

    @property
    def bounds(self) -> SearchBounds:
        """Just the bounds (a TuneConfig without the rest)."""
        return SearchBounds(**{f.name: getattr(self, f.name) for f in fields(SearchBounds)})

    def to_dict(self) -> dict[str, Any]:
        """JSON-shaped (ranges as lists), as a study stores it; the numerics at their
        defaults are left out, so a study made before they existed still resumes."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in asdict(self.bounds).items()
                if not (k in NUMERICS and v == getattr(SearchBounds, k))}


@dataclass(frozen=True, kw_only=True)
class TuneConfig(SearchBounds):
    """What to tune and within which bounds (the SearchBounds fields). Times in seconds.

    n_trials counts finished trials of the study in total, so rerunning resumes;
    None with a timeout means as many as fit. The study stops sooner once `patience`
    finished trials in a row did not cut the best time to target by 5% (None: never).
    trial_budget_s: the most training time one trial may take (default: 60 s, or 15%
    of the timeout if less).
    lr_range: LR bounds at the anchor batch with momentum 0.9 (replaces the LR
    range test). verify: how many of the best configurations are re-measured, each
    `verify_runs` times with fresh seeds, then raced up to `verify_max_runs` rounds
    until paired tests separate them (verify.py). rungs: 'on' pauses trials at rungs of
    training time and resumes the promising ones (search/rungs.py), 'off' trains each
    straight through, 'auto' uses rungs when the trial budget is long enough for them.
    """

    target: float
    n_trials: int | None = None
    timeout_s: float | None = None
    patience: int | None = DEFAULT_PATIENCE
    trial_budget_s: float | None = None
    storage: str | None = None
    study_name: str | None = None
    new_study: bool = False
    verify: int = 3
    verify_runs: int = 3
    verify_max_runs: int | None = None  # None: verify.RACE_FACTOR x verify_runs
    time_mode: TimeMode = "measured"
    headroom: float = 0.1
    memory_limit: int | None = None
    compare: bool = True
    seed: int = 0
    workers: int = 1
    devices: tuple[str, ...] | None = None
    nproc_per_trial: int = 1  # ranks per trial: checked with the device (parallel_runner)
    use_cache: bool = True
    artifact_dir: str | None = None  # dashboard artifacts; default: beside a SQLite file
    profile: str | None = None  # a saved `autobatch profile` file instead of profiling
    rungs: RungsChoice = "auto"
    checkpoint_dir: str | None = None  # paused trials' checkpoints; default: beside SQLite
    keep_model: str | None = None  # where the winner's model at target is handed over

    def __post_init__(self) -> None:
        check_target("target", self.target)
        if self.n_trials is not None and self.n_trials < 1:
            raise ConfigError(f"n_trials must be >= 1, got {self.n_trials}")
        if self.timeout_s is not None:
            check_positive("timeout", self.timeout_s)
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience must be >= 1 (or None: never stop early), got "
                              f"{self.patience}")
        if self.trial_budget_s is not None:
            check_positive("trial_budget", self.trial_budget_s)
        super().__post_init__()
        if self.verify < 0 or self.verify_runs < 1:
            raise ConfigError(f"verify must be >= 0 and verify_runs >= 1, got "
                              f"{self.verify} and {self.verify_runs}")
        if self.verify_max_runs is not None and self.verify_max_runs < self.verify_runs:
            raise ConfigError(f"verify_max_runs ({self.verify_max_runs}) must be >= "
                              f"verify_runs ({self.verify_runs})")
        if self.rungs not in RUNGS_CHOICES:
            raise ConfigError(f"rungs must be one of {', '.join(RUNGS_CHOICES)}, got "
                              f"{self.rungs!r}")
        if self.time_mode not in ("measured", "modeled"):
            raise ConfigError(f"time_mode must be measured or modeled, got {self.time_mode!r}")
        check_headroom("headroom", self.headroom)
        check_memory_limit("memory_limit", self.memory_limit)
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")
        if self.workers != 1:
            require_shared_storage(self.storage or default_storage_url(),
                                   f"{self.workers} workers" if self.workers else
                                   "a study set up for `autobatch worker`s (--workers 0)")

    @property
    def total_trials(self) -> int | None:
        """The study's trial budget: n_trials, else as many as fit in the timeout, else
        DEFAULT_TRIALS."""
        if self.n_trials is not None:
            return self.n_trials
        return None if self.timeout_s else DEFAULT_TRIALS

    @property
    def trial_budget(self) -> float:
        """trial_budget_s, else TRIAL_SHARE of the timeout (at most 60 s without rungs:
        rungs spend a long budget only on the configurations that earn it), else 60 s."""
        if self.trial_budget_s is not None:
            return self.trial_budget_s
        if not self.timeout_s:
            return DEFAULT_TRIAL_BUDGET_S
        share = TRIAL_SHARE * self.timeout_s
        return share if self.rungs != "off" else min(DEFAULT_TRIAL_BUDGET_S, share)
