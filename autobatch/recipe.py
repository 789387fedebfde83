"""Reading a recommendation back: the recipe in a result file, and its LR schedule as a
torch scheduler for the user's own training loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from autobatch.errors import ConfigError
from autobatch.hyperparams import Hyperparams
from autobatch.result import TuneResult
from autobatch.schedule import Schedule

RecipeSource = TuneResult | dict[str, Any] | str | Path


def result_data(source: RecipeSource) -> dict[str, Any]:
    """A result as best.json's dict: from a TuneResult, that dict, or a best.json path."""
    if isinstance(source, TuneResult):
        return source.to_dict()
    if isinstance(source, dict):
        return source
    path = Path(source)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"recipe file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"recipe file {str(path)!r} is not a JSON result file: {exc}") \
            from None
    if not isinstance(data, dict) or "batch_size" not in data or "lr" not in data:
        raise ConfigError(f"recipe file {str(path)!r} has no batch_size and lr: write it "
                          "with `autobatch tune --output best.json`")
    return data


def load_recipe(source: RecipeSource) -> tuple[str | None, Hyperparams]:
    """The workload name and the recipe of a result (see result_data)."""
    data = result_data(source)
    return data.get("workload"), Hyperparams.from_dict(data)


def lr_scheduler(result: RecipeSource, optimizer: torch.optim.Optimizer, *,
                 steps_per_epoch: int | None = None) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR that gives `optimizer` the recommended LR at every optimizer step.

    Build the optimizer with the recommended (peak) `lr`, and call the scheduler's
    step() after every optimizer.step() (per optimizer step, not per micro-batch): the
    k-th update (from 0) then runs at lr * schedule.lr_at(k), as the trials trained.
    steps_per_epoch: batches per epoch of your loop, for a schedule given in epochs or
    as a share; default: the step counts in the result, those of the tuned workload.
    """
    data = result_data(result)
    schedule = Schedule.from_dict(data.get("schedule") or {})
    if steps_per_epoch is None:
        stored = data.get("schedule") or {}
        resolved = Schedule.from_dict({
            **stored, "warmup": f"{stored.get('warmup_steps') or 0}steps",
            "horizon": (f"{stored['horizon_steps']}steps" if stored.get("horizon_steps")
                        else None)})
        schedule = resolved.resolve(1)
    else:
        schedule = schedule.resolve(steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule.lr_at)
