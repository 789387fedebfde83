"""The built-in workloads: data generated or shipped offline, so they run anywhere.

Each names its reference recipe and a suggested target beside its factory, so that
`autobatch workloads` can list them without generating any data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import autobatch.workloads.digits as digits
import autobatch.workloads.mnist1d as mnist1d
import autobatch.workloads.mnist1d_long as mnist1d_long
from autobatch.hyperparams import Hyperparams
from autobatch.workloads.kinds import WorkloadKind
from autobatch.workloads.workload import Workload


@dataclass(frozen=True)
class Builtin:
    factory: Callable[[], Workload]
    description: str
    reference: Hyperparams  # what the factory's workload carries as its reference
    target: float  # a suggested target: reached by the reference, below the plateau


BUILTINS: dict[str, Builtin] = {
    "mnist1d-cnn": Builtin(
        mnist1d.cnn_workload,
        "MNIST-1D, the paper's CNN (3 Conv1d x 25 channels, 5,210 params); 3,200 train / 800 val",
        mnist1d.REFERENCE, 0.9),
    "mnist1d-mlp": Builtin(
        mnist1d.mlp_workload,
        "MNIST-1D, the paper's MLP (40-100-100-10, 15,210 params); 3,200 train / 800 val",
        mnist1d.REFERENCE, 0.65),
    "mnist1d-long": Builtin(
        mnist1d_long.long_workload,
        "MNIST-1D at a harder setting, 1-D ResNet (64 channels, 81,354 params); "
        "32,000 train / 8,000 val",
        mnist1d_long.REFERENCE, mnist1d_long.TARGET),
    "digits-cnn": Builtin(
        digits.cnn_workload,
        "scikit-learn digits 8x8, small CNN (2 conv + linear); 1,151 train / 287 val",
        digits.REFERENCE, 0.97),
}

KIND = WorkloadKind(
    name="builtin", usage="built-ins: " + ", ".join(sorted(BUILTINS)),
    entries=tuple((name, b.description) for name, b in BUILTINS.items()),
    matches=lambda spec: spec in BUILTINS, load=lambda spec: BUILTINS[spec].factory())
