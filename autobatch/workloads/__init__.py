"""Workloads: what to train (Workload), and the kinds of names that load one.

Kinds are asked in order: the built-in names, ``torchvision:MODEL``, a user's script
(``script:COMMAND``), then a user's ``module:function`` (the catch-all). A new kind is
a module with a KIND, registered here before the catch-all.
"""

from autobatch.workloads import builtin, entry_point, script, vision
from autobatch.workloads.builtin import BUILTINS
from autobatch.workloads.kinds import (
    KINDS,
    KindOption,
    WorkloadKind,
    all_options,
    kind_of,
    load_workload,
    register,
)
from autobatch.workloads.script import ScriptWorkload, script_spec
from autobatch.workloads.workload import (
    OPTIMIZERS,
    Data,
    OptimizerFactory,
    TensorData,
    Workload,
    correct_count,
)

for _kind in (builtin.KIND, vision.KIND, script.KIND, entry_point.KIND):
    register(_kind)

__all__ = [
    "BUILTINS", "KINDS", "OPTIMIZERS", "Data", "KindOption", "OptimizerFactory", "ScriptWorkload",
    "TensorData",
    "Workload", "WorkloadKind", "all_options", "correct_count", "kind_of", "load_workload",
    "register", "script_spec",
]
