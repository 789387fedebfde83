"""What a study stores so that a resumed run or a worker asks the same question.

WorkerSettings: everything a worker process needs, with the prior, to rebuild the
objective; one typed, versioned value, serialised once into the study. The
contract: the settings a resumed study must share with the one it continues.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from autobatch.config import SearchBounds, TimeMode
from autobatch.errors import ConfigError
from autobatch.version import __version__
from autobatch.workloads import Workload

SETTINGS_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    """workload: the spec load_workload() rebuilds it from. n_trials: the study's trial
    budget (None: until the deadline). patience: see TuneConfig. rungs, checkpoint_dir
    and keep_models: see search/rungs.py and search/checkpoints.py."""

    workload: dict[str, Any]
    target: float
    trial_budget_s: float
    time_mode: TimeMode = "measured"
    n_trials: int | None = None
    patience: int | None = None
    seed: int = 0
    rungs: tuple[float, ...] | None = None  # Rungs.seconds; None: no rungs
    checkpoint_dir: str | None = None  # None: beside the SQLite file
    keep_models: bool = False
    nproc_per_trial: int = 1  # ranks per trial (a worker may choose its own)
    version: int = SETTINGS_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerSettings:
        version = data.get("version", 1)
        if version > SETTINGS_VERSION:
            raise ConfigError(f"the study was set up by a newer autobatch (settings version "
                              f"{version}, this one reads {SETTINGS_VERSION}): upgrade")
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        if values.get("rungs") is not None:  # JSON has no tuples
            values["rungs"] = tuple(values["rungs"])
        return cls(**values)


def contract(workload: Workload, *, target: float, bounds: SearchBounds,
             time_mode: TimeMode) -> dict[str, Any]:
    """The settings a resumed study must share with the one it continues."""
    return {
        "workload": workload.name,
        "fingerprint": workload.fingerprint(),
        "target": target,
        **bounds.to_dict(),
        "time_mode": time_mode,
        "direction": "minimize",
        # a study whose intermediate values are validation errors cannot be resumed:
        # the pruner would compare them with censored seconds (see pruning.py)
        "intermediate_values": "censored_s",
        "major_version": __version__.split(".")[0],
    }


def default_study_name(workload: Workload, target: float) -> str:
    return f"{workload.name}-target{target:g}"
