"""The recommendation a training pipeline reads: best.json (or YAML, or env lines).

Schema (version 1), all times in seconds:
  schema_version, autobatch_version, created_at, workload, target, device,
  batch_size, lr, momentum, optimizer (null: the workload's own),
  expected_time_to_target_s (median of the re-measured runs), spread {min, max,
  runs, reached}, candidates [{name, batch_size, lr, momentum, optimizer, tuned,
  trial_number, study_value, runs, median_s, reached}], prior {max_batch_size,
  b_sat, b_simple, knee, b_star, alpha, beta, lr_range}, study {name, storage
  (password masked), trials}, tuning_seconds.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import optuna

from autobatch import __version__
from autobatch.errors import ConfigError
from autobatch.files import json_safe, write_atomic

if TYPE_CHECKING:
    from autobatch.lr_range import LRRange
    from autobatch.probe import ProbeResult
    from autobatch.space import SearchSpace
    from autobatch.throughput import ProfileResult
    from autobatch.tuner import TuneConfig
    from autobatch.workload import Workload

SCHEMA_VERSION = 1
Format = Literal["json", "yaml", "env"]


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One configuration and its re-measured times (None: target not reached)."""

    name: str
    batch_size: int
    lr: float
    momentum: float
    optimizer: str | None
    tuned: bool
    trial_number: int | None = None
    study_value: float | None = None
    runs: tuple[float | None, ...] = ()

    @classmethod
    def from_trial(cls, trial: optuna.trial.FrozenTrial, optimizer: str | None) -> Candidate:
        attrs = trial.user_attrs
        return cls(name=f"trial {trial.number}", batch_size=attrs["batch_size"],
                   lr=attrs["lr"], momentum=attrs["momentum"], optimizer=optimizer, tuned=True,
                   trial_number=trial.number, study_value=trial.value)

    def key(self) -> tuple[int, float, float]:
        return (self.batch_size, round(self.lr, 10), round(self.momentum, 10))

    def with_run(self, seconds: float | None) -> Candidate:
        return replace(self, runs=(*self.runs, seconds))

    def median(self) -> float | None:
        """Median over runs, a run that missed the target counting as infinitely slow."""
        if not self.runs:
            return None
        value = statistics.median(math.inf if r is None else r for r in self.runs)
        return value if math.isfinite(value) else None

    def reached(self) -> int:
        """Runs that reached the target."""
        return sum(r is not None for r in self.runs)

    def reached_share(self) -> float:
        return self.reached() / len(self.runs) if self.runs else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "batch_size": self.batch_size, "lr": self.lr,
                "momentum": self.momentum, "optimizer": self.optimizer, "tuned": self.tuned,
                "trial_number": self.trial_number, "study_value": self.study_value,
                "runs": list(self.runs), "median_s": self.median(),
                "reached": self.reached()}


@dataclass(frozen=True, kw_only=True)
class TuneResult:
    """What tune() recommends and why; see the module docstring for the file schema."""

    workload: str
    target: float
    device: str
    best: Candidate
    candidates: tuple[Candidate, ...]
    prior: dict[str, Any]
    study: dict[str, Any]
    tuning_seconds: float
    created_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    @classmethod
    def build(cls, *, workload: Workload, config: TuneConfig, device: str,
              prior_probe: ProbeResult, prior_profile: ProfileResult,
              lr_range: LRRange | None, b_star: float, space: SearchSpace,
              candidates: list[Candidate], best: Candidate, study_name: str, storage: str,
              summary: dict[str, int], seconds: float) -> TuneResult:
        noise = prior_profile.noise
        prior = {
            "max_batch_size": prior_probe.max_batch_size,
            "peak_bytes": prior_probe.peak_bytes,
            "usable_bytes": prior_probe.usable_bytes,
            "alpha_s": prior_profile.alpha, "beta_s": prior_profile.beta,
            "b_sat": prior_profile.b_sat, "knee": prior_profile.knee,
            "b_simple": noise.b_simple if noise else None,
            "b_star": b_star,
            "lr_range": [lr_range.low, lr_range.high] if lr_range else space.lr_range,
            "batch_sizes": list(space.batch_sizes),
            "anchor_batch": space.anchor_batch,
        }
        return cls(workload=workload.name, target=config.target, device=device, best=best,
                   candidates=tuple(candidates), prior=prior,
                   study={"name": study_name, "storage": storage, "trials": summary},
                   tuning_seconds=seconds)

    def to_dict(self) -> dict[str, Any]:
        runs = [r for r in self.best.runs if r is not None]
        expected = self.best.median() if self.best.runs else self.best.study_value
        return json_safe({
            "schema_version": SCHEMA_VERSION,
            "autobatch_version": __version__,
            "created_at": self.created_at,
            "workload": self.workload,
            "target": self.target,
            "device": self.device,
            "batch_size": self.best.batch_size,
            "lr": self.best.lr,
            "momentum": self.best.momentum,
            "optimizer": self.best.optimizer,
            "expected_time_to_target_s": expected,
            "spread": {"min": min(runs) if runs else None, "max": max(runs) if runs else None,
                       "runs": len(self.best.runs), "reached": len(runs)},
            "candidates": [c.to_dict() for c in self.candidates],
            "prior": self.prior,
            "study": self.study,
            "tuning_seconds": self.tuning_seconds,
        })

    def render(self, fmt: Format) -> str:
        data = self.to_dict()
        if fmt == "json":
            return json.dumps(data, indent=2, allow_nan=False) + "\n"
        if fmt == "yaml":
            return "\n".join(_yaml_lines(data, 0)) + "\n"
        if fmt == "env":
            env = {"BATCH_SIZE": data["batch_size"], "LR": data["lr"],
                   "MOMENTUM": data["momentum"], "OPTIMIZER": data["optimizer"] or "",
                   "TIME_TO_TARGET_S": data["expected_time_to_target_s"]}
            return "".join(f"AUTOBATCH_{k}={'' if v is None else v}\n" for k, v in env.items())
        raise ConfigError(f"format must be json, yaml or env, got {fmt!r}")

    def write(self, path: str | Path, fmt: Format = "json") -> None:
        """Write atomically (temp file + os.replace): a reader never sees a torn file."""
        write_atomic(path, self.render(fmt), what="result")


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value == {} or value == []:
        return "{}" if isinstance(value, dict) else "[]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid YAML scalar


def _yaml_lines(value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:")
                lines += _yaml_lines(item, indent + 1)
            else:
                lines.append(f"{pad}{key}: {_yaml_scalar(item)}")
        return lines
    for item in value:
        if isinstance(item, (dict, list)) and item:
            nested = _yaml_lines(item, indent + 1)
            lines.append(f"{pad}- {nested[0].strip()}")
            lines += nested[1:]
        else:
            lines.append(f"{pad}- {_yaml_scalar(item)}")
    return lines
