"""autobatch: the batch size, learning rate and momentum that reach a target accuracy
in the least wall-clock time on this hardware, without running out of memory."""

__version__ = "0.1.0"  # before the imports: submodules read it

from autobatch.config import Budget, RunConfig
from autobatch.errors import (
    AutobatchError,
    ConfigError,
    DataError,
    DeviceError,
    DoesNotFitError,
    TargetNotReachedError,
    WorkloadError,
)
from autobatch.probe import ProbeResult, probe
from autobatch.result import TuneResult
from autobatch.throughput import ProfileResult, profile
from autobatch.train import EvalPoint, RunResult, run
from autobatch.tuner import TuneConfig, tune
from autobatch.workload import Recipe, TensorData, Workload, load_workload

__all__ = [
    "AutobatchError",
    "Budget",
    "ConfigError",
    "DataError",
    "DeviceError",
    "DoesNotFitError",
    "EvalPoint",
    "ProbeResult",
    "ProfileResult",
    "Recipe",
    "RunConfig",
    "RunResult",
    "TargetNotReachedError",
    "TensorData",
    "TuneConfig",
    "TuneResult",
    "Workload",
    "WorkloadError",
    "load_workload",
    "probe",
    "profile",
    "run",
    "tune",
]
