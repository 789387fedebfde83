"""Schedule: the shape of the learning rate over optimizer steps, as a multiplier of the
peak LR (the recipe's `lr`).

    constant  1 (after the warmup, if any)
    cosine    0.5 * (1 + cos(pi * p)), p = (step - W) / (H - W): 1 after the warmup,
              ~0 at the horizon H
    linear    1 - p
    wsd       warmup, then 1 until the cooldown, then 1 - sqrt(q) over the last
              `cooldown` share of the horizon, q = (step - C) / (H - C), C = H - D,
              D = round(cooldown * H) steps

The warmup before all of them is linear from ~0: (step + 1) / W for step < W, so the
last warmup step runs at the peak. `step` counts optimizer steps from 0: lr_at(k) is
the multiplier of the (k + 1)-th update (per optimizer step, never per micro-batch).

Spans are written as a user gives them: warmup `5%` (of the horizon), `200steps` or
`1epochs`; horizon `40epochs` or `2000steps` (None: the run's budget). resolve() turns
them into optimizer steps for a batch stream with a given number of steps per epoch;
lr_at() needs a resolved schedule. A horizon in seconds is refused: the step at which
a number of seconds ends is known only while training, and varies from run to run, so
the LR at a given step could not be reproduced by another run or by lr_scheduler().
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, get_args

from autobatch.errors import ConfigError

ScheduleName = Literal["constant", "cosine", "linear", "wsd"]
SCHEDULE_NAMES: tuple[ScheduleName, ...] = get_args(ScheduleName)
DECAYING: tuple[ScheduleName, ...] = ("cosine", "linear", "wsd")
DEFAULT_COOLDOWN = 0.2

_SPAN_RE = re.compile(r"^\s*(?P<num>[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*"
                      r"(?P<unit>%|steps?|epochs?|s|sec|secs|seconds|m|min|h)?\s*$",
                      re.IGNORECASE)
_WORDS = {
    "constant": "the peak LR",
    "cosine": "cosine decay from the peak LR to 0 at the horizon: "
              "0.5 * (1 + cos(pi * (step - warmup) / (horizon - warmup)))",
    "linear": "linear decay from the peak LR to 0 at the horizon: "
              "1 - (step - warmup) / (horizon - warmup)",
    "wsd": "the peak LR, then over the last cooldown steps C: "
           "1 - sqrt((step - (horizon - C)) / C)",
}


def parse_span(name: str, text: str, units: tuple[str, ...]) -> tuple[float, str]:
    """'5%' -> (0.05, 'share'), '200steps' -> (200, 'steps'), '1.5epochs' -> (1.5,
    'epochs'); a bare number is steps. `units`: the kinds allowed here."""
    match = _SPAN_RE.match(str(text))
    if not match:
        raise ConfigError(f"{name} must look like {_examples(units)}, got {text!r}")
    num, unit = float(match["num"]), (match["unit"] or "steps").lower()
    kind = ("share" if unit == "%" else "steps" if unit.startswith("step")
            else "epochs" if unit.startswith("epoch") else "seconds")
    if kind == "seconds":
        raise ConfigError(
            f"{name} {text!r} is in seconds: give it in steps or epochs (the step at which "
            "a number of seconds ends is known only while training and varies between "
            "runs, so the LR at each step could not be reproduced)")
    if kind not in units:
        raise ConfigError(f"{name} must look like {_examples(units)}, got {text!r}")
    if kind == "steps" and num != int(num):
        raise ConfigError(f"{name} steps must be a whole number, got {text!r}")
    return (num / 100 if kind == "share" else num), kind


def _examples(units: tuple[str, ...]) -> str:
    examples = {"share": "5%", "steps": "200steps", "epochs": "1epochs"}
    return ", ".join(examples[u] for u in units)


def _span_text(value: float, kind: str) -> str:
    if kind == "share":
        return f"{value * 100:g}%"
    return f"{int(value)}steps" if kind == "steps" else f"{value:g}epochs"


def parse_share(name: str, text: str | float) -> float:
    """'20%' or 0.2 -> 0.2 (the range is checked where the share is used)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    body = str(text).strip()
    try:
        return float(body[:-1]) / 100 if body.endswith("%") else float(body)
    except ValueError:
        raise ConfigError(f"{name} must be a share like 20% or 0.2, got {text!r}") from None


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """The LR schedule of a recipe; see the module docstring. Spans are kept in the
    canonical form of parse_span (`5%`, `200steps`, `1.5epochs`).

    name: constant, cosine, linear or wsd. warmup: linear warmup length ('0steps':
    none). horizon: where a decaying schedule reaches ~0 (None: the run's budget;
    `constant` has none). cooldown: wsd's share of the horizon spent cooling down,
    in (0, 1).
    """

    name: ScheduleName = "constant"
    warmup: str = "0steps"
    horizon: str | None = None
    cooldown: float = DEFAULT_COOLDOWN

    def __post_init__(self) -> None:
        if self.name not in SCHEDULE_NAMES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULE_NAMES)}, "
                              f"got {self.name!r}")
        warmup, warmup_kind = parse_span("warmup", self.warmup, ("share", "steps", "epochs"))
        object.__setattr__(self, "warmup", _span_text(warmup, warmup_kind))
        if isinstance(self.cooldown, bool) or not (
                isinstance(self.cooldown, (int, float)) and 0 < self.cooldown < 1):
            raise ConfigError(f"cooldown must be in (0, 1), got {self.cooldown!r}")
        if warmup_kind == "share" and warmup >= 1:
            raise ConfigError(f"warmup {self.warmup} must be less than the horizon (100%)")
        if self.horizon is None:
            return
        if self.name == "constant":
            raise ConfigError(f"a constant schedule has no horizon, got horizon "
                              f"{self.horizon!r}: use cosine, linear or wsd to decay")
        horizon, horizon_kind = parse_span("horizon", self.horizon, ("steps", "epochs"))
        if horizon <= 0:
            raise ConfigError(f"horizon must be > 0, got {self.horizon!r}")
        object.__setattr__(self, "horizon", _span_text(horizon, horizon_kind))
        if warmup_kind == horizon_kind and warmup >= horizon:
            raise ConfigError(f"warmup {self.warmup} must be shorter than the horizon "
                              f"{self.horizon}")

    @property
    def decays(self) -> bool:
        return self.name in DECAYING

    def resolve(self, steps_per_epoch: int, budget_steps: int | None = None) -> Schedule:
        """This schedule in optimizer steps, for a stream of `steps_per_epoch` batches.

        budget_steps: the run's budget in steps where it is one (a budget in seconds:
        None); it is a decaying schedule's default horizon, and a horizon longer than it
        is refused: the decay would never finish, so the run would stop at a high LR.
        """
        if steps_per_epoch < 1:
            raise ConfigError(f"steps per epoch must be >= 1, got {steps_per_epoch}")
        horizon_steps: int | None = None
        if self.decays:
            if self.horizon is None and budget_steps is None:
                raise ConfigError(
                    f"a {self.name} schedule needs a horizon in steps or epochs (or a "
                    "budget in steps or epochs, its default horizon)")
            horizon_steps = (budget_steps if self.horizon is None
                             else self._steps("horizon", self.horizon, steps_per_epoch, None))
            horizon_steps = max(1, horizon_steps)
            if budget_steps is not None and horizon_steps > budget_steps:
                raise ConfigError(f"horizon {self.horizon} ({horizon_steps} steps) is longer "
                                  f"than the budget ({budget_steps} steps): the LR would "
                                  "never decay; shorten the horizon or raise the budget")
        warmup_steps = self._steps("warmup", self.warmup, steps_per_epoch, horizon_steps)
        resolved = replace(self, warmup=f"{warmup_steps}steps",
                           horizon=None if horizon_steps is None else f"{horizon_steps}steps")
        resolved.check_cooldown()
        return resolved

    def _steps(self, name: str, text: str, steps_per_epoch: int,
               horizon_steps: int | None) -> int:
        value, kind = parse_span(name, text, ("share", "steps", "epochs"))
        if kind == "share" and value > 0:
            if horizon_steps is None:
                raise ConfigError(f"warmup {text} is a share of the horizon, and a "
                                  f"{self.name} schedule has none: give it in steps or epochs")
            return round(value * horizon_steps)
        return int(value) if kind == "steps" else round(value * steps_per_epoch)

    def check_cooldown(self) -> None:
        if self.name == "wsd" and self.horizon_steps - self.cooldown_steps < self.warmup_steps:
            raise ConfigError(f"the wsd cooldown ({self.cooldown_steps} steps) overlaps the "
                              f"warmup ({self.warmup_steps} of {self.horizon_steps} steps)")
        if self.horizon is not None and self.warmup_steps >= self.horizon_steps:
            raise ConfigError(f"warmup ({self.warmup_steps} steps) must be shorter than the "
                              f"horizon ({self.horizon_steps} steps)")

    def _resolved(self, text: str | None) -> int:
        value, kind = parse_span("span", text or "0steps", ("share", "steps", "epochs"))
        if kind != "steps":
            raise ConfigError(f"schedule {self} is not resolved to steps: call resolve()")
        return int(value)

    @property
    def warmup_steps(self) -> int:
        return self._resolved(self.warmup)

    @property
    def horizon_steps(self) -> int | None:
        return self._resolved(self.horizon) if self.horizon is not None else None

    @property
    def cooldown_steps(self) -> int:
        """wsd's cooldown length in steps (at least 1)."""
        return max(1, round(self.cooldown * (self.horizon_steps or 0)))

    def lr_at(self, step: int) -> float:
        """The multiplier of the peak LR for optimizer step `step` (from 0)."""
        warmup = self.warmup_steps
        if step < warmup:
            return (step + 1) / warmup
        horizon = self.horizon_steps
        if horizon is None:
            return 1.0
        if self.name == "wsd":
            start = horizon - self.cooldown_steps
            return 1.0 if step < start else 1.0 - math.sqrt(min(1.0, (step - start)
                                                                / (horizon - start)))
        progress = min(1.0, (step - warmup) / (horizon - warmup))
        if self.name == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress

    def words(self) -> str:
        """The formula in words (for the result file)."""
        warmup = ("" if self.warmup in ("0steps", "0%", "0epochs") else
                  f"linear warmup from ~0 to the peak LR over "
                  f"{re.sub(r'(?<=[0-9])(?=[a-z])', ' ', self.warmup)} "
                  "((step + 1) / warmup), then ")
        cooldown = f" (cooldown {self.cooldown:.0%} of the horizon)" if self.name == "wsd" else ""
        return f"{warmup}{_WORDS[self.name]}{cooldown}; step counts optimizer steps from 0"

    def steps(self) -> dict[str, Any]:
        """A resolved schedule's step counts and formula, per optimizer step."""
        return {"warmup_steps": self.warmup_steps, "horizon_steps": self.horizon_steps,
                "cooldown_steps": self.cooldown_steps if self.name == "wsd" else None,
                "per": "optimizer step", "formula": self.words()}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | Schedule) -> Schedule:
        """From to_dict()'s output (other keys, such as a result file's resolved step
        counts, ignored)."""
        if isinstance(data, Schedule):
            return data
        names = ("name", "warmup", "horizon", "cooldown")
        return cls(**{k: data[k] for k in names if k in data})

    def __str__(self) -> str:
        parts = [self.name] + ([f"warmup {self.warmup}"] if self.warmup != "0steps" else [])
        parts += [f"horizon {self.horizon}"] if self.horizon else []
        parts += [f"cooldown {self.cooldown:g}"] if self.name == "wsd" else []
        return ", ".join(parts)


CONSTANT = Schedule()


def steps_per_epoch(samples: int, batch_size: int) -> int:
    """Full batches in one pass over `samples` (the last partial batch is dropped, as
    the training loop's batch stream does)."""
    return max(1, samples // batch_size)
