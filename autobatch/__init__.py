"""autobatch: the batch size, learning rate and momentum that reach a target accuracy
in the least wall-clock time on this hardware, without running out of memory."""

from autobatch import integrations as integrations  # registers the framework kinds
from autobatch.config import Budget, RunConfig, TuneConfig
from autobatch.errors import (
    AutobatchError,
    CheckpointError,
    ConfigError,
    DataError,
    DeviceError,
    DoesNotFitError,
    TargetNotReachedError,
    WorkloadError,
)
from autobatch.hyperparams import Hyperparams, Recipe
from autobatch.measure import ProbeResult, ProfileResult, probe, profile
from autobatch.recipe import load_recipe, lr_scheduler
from autobatch.result import TuneResult
from autobatch.schedule import Schedule
from autobatch.script import trial
from autobatch.train import EvalPoint, RunResult, run
from autobatch.tuner import tune
from autobatch.version import __version__ as __version__
from autobatch.workloads import TensorData, Workload, load_workload

__all__ = [
    "AutobatchError",
    "Budget",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DeviceError",
    "DoesNotFitError",
    "EvalPoint",
    "Hyperparams",
    "ProbeResult",
    "ProfileResult",
    "Recipe",
    "RunConfig",
    "RunResult",
    "Schedule",
    "TargetNotReachedError",
    "TensorData",
    "TuneConfig",
    "TuneResult",
    "Workload",
    "WorkloadError",
    "load_recipe",
    "load_workload",
    "lr_scheduler",
    "probe",
    "profile",
    "run",
    "trial",
    "tune",
]
