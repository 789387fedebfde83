"""The built-in workloads: data generated or shipped offline, so they run anywhere."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from autobatch.workloads.digits import cnn_workload as digits_cnn
from autobatch.workloads.kinds import WorkloadKind
from autobatch.workloads.mnist1d import cnn_workload as mnist1d_cnn
from autobatch.workloads.mnist1d import mlp_workload as mnist1d_mlp
from autobatch.workloads.workload import Workload


@dataclass(frozen=True)
class Builtin:
    factory: Callable[[], Workload]
    description: str


BUILTINS: dict[str, Builtin] = {
    "mnist1d-cnn": Builtin(
        mnist1d_cnn,
        "MNIST-1D, the paper's CNN (3 Conv1d x 25 channels, 5,210 params); 3,200 train / 800 val"),
    "mnist1d-mlp": Builtin(
        mnist1d_mlp,
        "MNIST-1D, the paper's MLP (40-100-100-10, 15,210 params); 3,200 train / 800 val"),
    "digits-cnn": Builtin(
        digits_cnn,
        "scikit-learn digits 8x8, small CNN (2 conv + linear); 1,151 train / 287 val"),
}

KIND = WorkloadKind(
    name="builtin", usage="built-ins: " + ", ".join(sorted(BUILTINS)),
    entries=tuple((name, b.description) for name, b in BUILTINS.items()),
    matches=lambda spec: spec in BUILTINS, load=lambda spec: BUILTINS[spec].factory())
