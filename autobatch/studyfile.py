"""Study files (TOML) and the conversion of user-facing option values into a TuneConfig.

A study file holds the same settings as `autobatch tune`'s options, with the same
names (dashes or underscores); options given on the command line win:

    workload = "mnist1d-cnn"
    target = 0.9
    timeout = "2m"
    lr-range = "1e-3:3"
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from autobatch.config import Budget, parse_bytes
from autobatch.errors import ConfigError
from autobatch.tuner import TuneConfig

WORKLOAD_KEYS = ("workload", "data", "image_size", "num_classes", "app_dir", "device")
TUNE_KEYS = ("target", "n_trials", "patience", "timeout", "trial_budget", "storage", "study_name",
             "batch_size", "min_batch", "max_batch", "lr", "lr_range", "momentum",
             "momentum_range", "optimizer", "verify", "verify_runs", "time", "headroom",
             "memory_limit", "seed", "output", "format", "compare", "workers", "devices",
             "use_cache", "artifact_dir")


def parse_seconds(name: str, text: str | float) -> float:
    """'90', '90s', '10m', '1h' -> seconds."""
    budget = Budget.parse(str(text))
    if budget.seconds is None:
        raise ConfigError(f"{name} must be a duration like 90s or 10m, got {text!r}")
    return budget.seconds


def parse_range(name: str, text: str | list[float]) -> tuple[float, float]:
    """'1e-3:1' (or a two-element list) -> (0.001, 1.0)."""
    parts = text if isinstance(text, list) else str(text).split(":")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"{name} must look like LOW:HIGH (e.g. 1e-3:1), got {text!r}") \
            from None
    return low, high


def load_study_file(path: str | Path) -> dict[str, Any]:
    """Read a study file; unknown keys are an error naming them."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"study file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"study file {str(path)!r} is not valid TOML: {exc}") from None
    options = {key.replace("-", "_"): value for key, value in raw.items()}
    unknown = sorted(set(options) - set(WORKLOAD_KEYS) - set(TUNE_KEYS))
    if unknown:
        raise ConfigError(f"study file {str(path)!r} has unknown keys: {', '.join(unknown)}")
    return options


def merge(file_options: dict[str, Any], cli_options: dict[str, Any]) -> dict[str, Any]:
    """Command-line values (not None) over study-file values."""
    merged = dict(file_options)
    merged.update({k: v for k, v in cli_options.items() if v is not None})
    return merged


def tune_config(options: dict[str, Any]) -> TuneConfig:
    """A validated TuneConfig from merged options (text values parsed here)."""
    if options.get("target") is None:
        raise ConfigError("target is required (--target 0.9, or target = 0.9 in --config)")
    fields: dict[str, Any] = {}
    for key in ("target", "n_trials", "storage", "study_name", "batch_size", "min_batch",
                "max_batch", "lr", "momentum", "optimizer", "verify", "verify_runs",
                "headroom", "seed", "compare", "workers", "use_cache", "new_study",
                "artifact_dir"):
        if options.get(key) is not None:
            fields[key] = options[key]
    if options.get("patience") is not None:  # 0: never stop early
        fields["patience"] = options["patience"] or None
    if options.get("timeout") is not None:
        fields["timeout_s"] = parse_seconds("timeout", options["timeout"])
    if options.get("trial_budget") is not None:
        fields["trial_budget_s"] = parse_seconds("trial_budget", options["trial_budget"])
    for key in ("lr_range", "momentum_range"):
        if options.get(key) is not None:
            fields[key] = parse_range(key, options[key])
    if options.get("devices") is not None:
        devices = tuple(d.strip() for d in str(options["devices"]).split(",") if d.strip())
        if not devices or not all(d.isdigit() for d in devices):
            raise ConfigError(f"devices must look like 0,1,2,3, got {options['devices']!r}")
        fields["devices"] = devices
        fields.setdefault("workers", len(devices))
    if options.get("time") is not None:
        fields["time_mode"] = options["time"]
    if options.get("memory_limit") is not None:
        limit = options["memory_limit"]
        fields["memory_limit"] = limit if isinstance(limit, int) else parse_bytes(limit)
    return TuneConfig(**fields)
