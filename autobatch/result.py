"""The recommendation a training pipeline reads: best.json (or YAML, or env lines).

Schema (version 1), all times in seconds:
  schema_version, autobatch_version, created_at, workload, target, device,
  batch_size, lr (the peak LR), momentum, optimizer (null: the workload's own),
  schedule {name, warmup, horizon, cooldown (as tuned: steps, epochs or a share),
  warmup_steps, horizon_steps, cooldown_steps, per ("optimizer step"), formula},
  expected_time_to_target_s (median of the re-measured runs), spread {min, max,
  runs, reached}, verdict ("recommendation": use this recipe; "keep_reference": it was
  not shown faster than the workload's reference recipe), verdict_reason, evidence
  {test, alpha, floor_tie, vs_reference, vs_runner_up: {against, wins, losses, ties,
  p_value, median_ratio} or null} (see autobatch/verdict.py), candidates [{name,
  batch_size, lr, momentum, optimizer, tuned, trial_number, study_value, runs,
  median_s, interval {low, high, coverage}, reached, first_evals}], prior
  {max_batch_size, b_sat, b_simple, knee, b_star, alpha, beta, lr_range (the range
  test's), search_lr_range (what the study searched, at the anchor batch), lr_doubt},
  study {name, storage (password masked), trials}, tuning_seconds, break_even
  (tuning_seconds / the reference recipe's median time to target; null: not
  measured; <= 1: tuning cost no more than one run of the reference), first_model_s
  (from the tune's start until a trial first trained a model to the target; null: none
  in this run), first_model_break_even (first_model_s / the reference's median),
  kept_model (where --keep-model put the best trial's model at the target), speed_drift
  {median_ratio (the last window's median of measured / profiled samples/s), trials,
  window, worst_ratio, limit} or null (too few trials; see search/drift.py).
  The top-level recipe is the tuned recommendation whatever the verdict.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from autobatch.candidate import REFERENCE, Candidate
from autobatch.errors import ConfigError
from autobatch.files import json_safe, write_atomic
from autobatch.schedule import steps_per_epoch
from autobatch.search import Prior
from autobatch.verdict import Verdict, judge, median_interval
from autobatch.version import __version__

SCHEMA_VERSION = 1
Format = Literal["json", "yaml", "env"]
FORMATS: tuple[Format, ...] = get_args(Format)
# The schedule's keys in the env format (the formula in words does not fit a shell line).
ENV_SCHEDULE = ("name", "warmup_steps", "horizon_steps", "cooldown", "cooldown_steps")


def check_format(name: str, fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"{name} must be {', '.join(FORMATS[:-1])} or {FORMATS[-1]}, got "
                          f"{fmt!r}")


@dataclass(frozen=True, kw_only=True)
class StudyInfo:
    """Where the study lives: its name, its storage (password masked), trials by state."""

    name: str
    storage: str
    trials: dict[str, int]


@dataclass(frozen=True, kw_only=True)
class TuneResult:
    """What tune() recommends and why; see the module docstring for the file schema."""

    workload: str
    target: float
    device: str
    best: Candidate
    candidates: tuple[Candidate, ...]
    prior: dict[str, Any]
    study: StudyInfo
    tuning_seconds: float
    train_size: int | None = None  # training samples: resolves the schedule to steps
    verdict: Verdict | None = None  # None: judged from the candidates when written
    speed_drift: dict[str, Any] | None = None  # see search/drift.speed_drift
    first_model_s: float | None = None
    kept_model: str | None = None
    created_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    @classmethod
    def build(cls, *, workload: str, target: float, device: str, prior: Prior,
              candidates: list[Candidate], best: Candidate, study: StudyInfo,
              seconds: float, train_size: int | None = None,
              speed_drift: dict[str, Any] | None = None, first_model_s: float | None = None,
              kept_model: str | None = None) -> TuneResult:
        profile, space = prior.profile, prior.space
        noise = profile.noise
        facts = {
            "max_batch_size": prior.probe.max_batch_size,
            "peak_bytes": prior.probe.peak_bytes,
            "usable_bytes": prior.probe.usable_bytes,
            "alpha_s": profile.alpha, "beta_s": profile.beta,
            "b_sat": profile.b_sat, "knee": profile.knee,
            "b_simple": noise.b_simple if noise else None,
            "b_star": prior.b_star,
            "lr_range": ([prior.lr_range.low, prior.lr_range.high] if prior.lr_range
                         else space.lr_range),
            "search_lr_range": space.lr_range,
            "lr_doubt": prior.lr_doubt,
            "batch_sizes": list(space.batch_sizes),
            "anchor_batch": space.anchor_batch,
        }
        return cls(workload=workload, target=target, device=device, best=best,
                   candidates=tuple(candidates), prior=facts, study=study,
                   tuning_seconds=seconds, train_size=train_size,
                   verdict=judge(candidates, best), speed_drift=speed_drift,
                   first_model_s=first_model_s, kept_model=kept_model)

    def break_even(self, seconds: float | None = None) -> float | None:
        """`seconds` (default: the tune's wall time) in runs of the reference recipe to
        the target."""
        reference = next((c for c in self.candidates if c.name == REFERENCE), None)
        median = reference.median() if reference else None
        seconds = self.tuning_seconds if seconds is None else seconds
        return seconds / median if median else None

    def judged(self) -> Verdict:
        return self.verdict or judge(list(self.candidates), self.best)

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
            **self.recipe(),
            "expected_time_to_target_s": expected,
            "spread": {"min": min(runs) if runs else None, "max": max(runs) if runs else None,
                       "runs": len(self.best.runs), "reached": len(runs)},
            **self.judged().to_dict(),
            "candidates": [{**c.to_dict(), "interval": median_interval(c.runs)}
                           for c in self.candidates],
            "prior": self.prior,
            "study": asdict(self.study),
            "tuning_seconds": self.tuning_seconds,
            "break_even": self.break_even(),
            "first_model_s": self.first_model_s,
            "first_model_break_even": (self.break_even(self.first_model_s)
                                       if self.first_model_s is not None else None),
            "kept_model": self.kept_model,
            "speed_drift": self.speed_drift,
        })

    def recipe(self) -> dict[str, Any]:
        """The recommended recipe, its schedule with the step counts it resolves to, and
        its per-device micro-batch (batch_size is the global batch)."""
        hparams = self.best.hparams
        recipe = {**hparams.to_dict(), "micro_batch": hparams.micro_batch}
        if self.train_size:
            resolved = hparams.schedule.resolve(steps_per_epoch(self.train_size,
                                                                hparams.batch_size))
            recipe["schedule"] = {**hparams.schedule.to_dict(), **resolved.steps()}
        return recipe

    def render(self, fmt: Format) -> str:
        check_format("format", fmt)
        data = self.to_dict()
        if fmt == "json":
            return json.dumps(data, indent=2, allow_nan=False) + "\n"
        if fmt == "yaml":
            return "\n".join(_yaml_lines(data, 0)) + "\n"
        env = {**{k.upper(): data[k] for k in self.best.hparams.to_dict() if k != "schedule"},
               **{f"SCHEDULE_{k.upper()}" if k != "name" else "SCHEDULE": v
                  for k, v in data["schedule"].items() if k in ENV_SCHEDULE},
               "TIME_TO_TARGET_S": data["expected_time_to_target_s"],
               "VERDICT": data["verdict"]}
        return "".join(f"AUTOBATCH_{k}={env_value(v)}\n" for k, v in env.items())

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


def env_value(value: object) -> str:
    """A value as a shell variable holds it: nothing for None, 1/0 for a flag."""
    if value is None:
        return ""
    return str(int(value)) if isinstance(value, bool) else str(value)
