"""Study files (TOML), and tune's options as given turned into a TuneConfig.

A study file holds the same settings as `autobatch tune`'s options, with the same
names (dashes or underscores); options given on the command line win:

    workload = "mnist1d-cnn"
    target = 0.9
    timeout = "2m"
    lr-range = "1e-3:3"
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from autobatch.config import Budget, TuneConfig
from autobatch.errors import ConfigError
from autobatch.hyperparams import parse_grad_accum
from autobatch.memory_size import parse_bytes
from autobatch.workloads import all_options


def parse_seconds(name: str, text: str | float) -> float:
    """'90', '90s', '5min', '10m', '1h' -> seconds."""
    try:
        seconds = Budget.parse(str(text)).seconds
    except ConfigError:  # its message speaks of a budget, with steps and epochs
        seconds = None
    if seconds is None:
        raise ConfigError(f"{name} must be a duration like 90s, 5min, 10m or 1h, got {text!r}")
    return seconds


def parse_range(name: str, text: str | list[float]) -> tuple[float, float]:
    """'1e-3:1' (or a two-element list) -> (0.001, 1.0)."""
    parts = text if isinstance(text, list) else str(text).split(":")
    try:
        low, high = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must look like LOW:HIGH (e.g. 1e-3:1), got {text!r}") \
            from None
    return low, high


# What a study-file value may be, by the names in TuneOptions' annotations, and how a
# message says it.
_VALUE_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "str": (lambda v: isinstance(v, str), "text"),
    "Path": (lambda v: isinstance(v, str), "a path"),
    "float": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "list[float]": (lambda v: isinstance(v, list) and len(v) == 2 and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in v), "[low, high]"),
}


def check_value(where: str, key: str, value: Any, annotation: str) -> None:
    """Refuse a study-file value of the wrong type for `annotation` ('str | float | None')."""
    kinds = [k.strip() for k in annotation.split("|") if k.strip() != "None"]
    if not any(_VALUE_KINDS[k][0](value) for k in kinds):
        wanted = " or ".join(_VALUE_KINDS[k][1] for k in kinds)
        raise ConfigError(f"{where}: {key.replace('_', '-')} must be {wanted}, got {value!r}")


def _line_of(text: str, key: str) -> int | None:
    spellings = {key, key.replace("_", "-")}
    for number, line in enumerate(text.splitlines(), 1):
        name = line.split("=", 1)[0].strip().strip("\"'")
        if "=" in line and name in spellings:
            return number
    return None


# TuneConfig fields whose option value is text to parse (or 0 for None: patience)
PARSED = ("patience", "lr_range", "momentum_range", "devices", "memory_limit", "grad_accum")


@dataclass(frozen=True, kw_only=True)
class TuneOptions:
    """`autobatch tune`'s options as a user gives them, on the command line or in a
    study file, under the same names (None: not given). Text values (durations, ranges,
    memory sizes, device lists) are parsed by tune_config(). workload_options: the
    options of the workload's kind (see autobatch.workloads.kinds)."""

    workload: str | None = None
    device: str | None = None
    target: float | None = None
    n_trials: int | None = None
    patience: int | None = None
    timeout: str | float | None = None
    trial_budget: str | float | None = None
    storage: str | None = None
    study_name: str | None = None
    new_study: bool | None = None
    output: str | None = None
    format: str | None = None
    artifact_dir: str | None = None
    batch_size: int | None = None
    min_batch: int | None = None
    max_batch: int | None = None
    lr: float | None = None
    lr_range: str | list[float] | None = None
    momentum: float | None = None
    momentum_range: str | list[float] | None = None
    optimizer: str | None = None
    schedule: str | None = None
    grad_accum: str | int | None = None
    precision: str | None = None
    channels_last: bool | None = None
    verify: int | None = None
    verify_runs: int | None = None
    verify_max_runs: int | None = None
    time: str | None = None
    headroom: float | None = None
    memory_limit: str | int | None = None
    workers: int | None = None
    devices: str | None = None
    nproc_per_trial: int | None = None
    compare: bool | None = None
    use_cache: bool | None = None
    profile: str | None = None
    seed: int | None = None
    rungs: str | None = None
    checkpoint_dir: str | None = None
    keep_model: str | None = None
    workload_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: str | Path) -> TuneOptions:
        """Read a study file; unknown keys are an error naming them."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            raw = tomllib.loads(text)
        except FileNotFoundError:
            raise ConfigError(f"study file {str(path)!r} does not exist") from None
        except IsADirectoryError:
            raise ConfigError(f"study file {str(path)!r} is a directory") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"study file {str(path)!r} is not UTF-8 text (byte "
                              f"{exc.start})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"study file {str(path)!r} is not valid TOML: {exc}") from None
        options = {key.replace("-", "_"): value for key, value in raw.items()}
        annotations = {f.name: str(f.type) for f in fields(cls) if f.name != "workload_options"}
        names = set(annotations)
        kind_options = {o.name: o for o in all_options()}
        kind_names = set(kind_options)
        unknown = sorted(set(options) - names - kind_names)
        if unknown:
            raise ConfigError(f"study file {str(path)!r} has unknown keys: {', '.join(unknown)}")
        for key, value in options.items():
            line = _line_of(text, key)
            where = f"study file {str(path)!r}" + (f", line {line}" if line else "")
            check_value(where, key, value, annotations[key] if key in annotations
                        else f"{kind_options[key].type.__name__} | None")
        return cls(**{k: v for k, v in options.items() if k in names},
                   workload_options={k: v for k, v in options.items() if k in kind_names})

    def over(self, base: TuneOptions) -> TuneOptions:
        """These options where given, else base's (the command line over a study file)."""
        given = {f.name: getattr(self, f.name) for f in fields(self)
                 if f.name != "workload_options" and getattr(self, f.name) is not None}
        workload_options = {**base.workload_options,
                            **{k: v for k, v in self.workload_options.items() if v is not None}}
        return replace(base, **given, workload_options=workload_options)

    def tune_config(self) -> TuneConfig:
        """A validated TuneConfig (text values parsed here)."""
        if self.target is None:
            raise ConfigError("target is required (--target 0.9, or target = 0.9 in --config)")
        # options named as TuneConfig's fields pass as they are, except those parsed below
        same = {f.name for f in fields(TuneConfig)} - set(PARSED)
        config: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)
                                  if f.name in same and getattr(self, f.name) is not None}
        if self.patience is not None:  # 0: never stop early
            config["patience"] = self.patience or None
        if self.timeout is not None:
            config["timeout_s"] = parse_seconds("timeout", self.timeout)
        if self.trial_budget is not None:
            config["trial_budget_s"] = parse_seconds("trial_budget", self.trial_budget)
        for key in ("lr_range", "momentum_range"):
            if getattr(self, key) is not None:
                config[key] = parse_range(key, getattr(self, key))
        if self.devices is not None:
            devices = tuple(d.strip() for d in str(self.devices).split(",") if d.strip())
            if not devices or not all(d.isdigit() for d in devices):
                raise ConfigError(f"devices must look like 0,1,2,3, got {self.devices!r}")
            config["devices"] = devices
            config.setdefault("workers", max(1, len(devices) // (self.nproc_per_trial or 1)))
        if self.time is not None:
            config["time_mode"] = self.time
        if self.grad_accum is not None:
            config["grad_accum"] = parse_grad_accum(self.grad_accum)
        if self.memory_limit is not None:
            limit = self.memory_limit
            config["memory_limit"] = limit if isinstance(limit, int) else parse_bytes(limit)
        return TuneConfig(**config)
