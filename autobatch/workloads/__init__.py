"""Built-in workloads: data generated or shipped offline, so they run anywhere."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from autobatch.workload import Workload
from autobatch.workloads import digits, mnist1d


@dataclass(frozen=True)
class Builtin:
    factory: Callable[[], Workload]
    description: str


BUILTINS: dict[str, Builtin] = {
    "mnist1d-cnn": Builtin(
        mnist1d.cnn_workload,
        "MNIST-1D, the paper's CNN (3 Conv1d x 25 channels, 5,210 params); 3,200 train / 800 val"),
    "mnist1d-mlp": Builtin(
        mnist1d.mlp_workload,
        "MNIST-1D, the paper's MLP (40-100-100-10, 15,210 params); 3,200 train / 800 val"),
    "digits-cnn": Builtin(
        digits.cnn_workload,
        "scikit-learn digits 8x8, small CNN (2 conv + linear); 1,151 train / 287 val"),
}
