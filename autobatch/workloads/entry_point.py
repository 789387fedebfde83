"""A user's own workload: ``package.module:function`` returning an autobatch.Workload
(or ``package.module:NAME`` naming one)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from autobatch.errors import WorkloadError
from autobatch.workloads.kinds import KindOption, WorkloadKind
from autobatch.workloads.workload import Workload


def import_attr(spec: str, app_dir: str | None = None) -> object:
    """The object `package.module:NAME` names, with `app_dir` first on sys.path."""
    module_name, colon, attr = spec.partition(":")
    if not colon:
        raise WorkloadError(
            f"entry point {spec!r} has no ':'; write it as 'package.module:function'")
    if not module_name or not attr:
        raise WorkloadError(f"entry point {spec!r} must look like 'package.module:function'")
    if app_dir is not None:
        app_path = Path(app_dir).resolve()
        if not app_path.is_dir():
            raise WorkloadError(f"app dir {str(app_dir)!r} is not a directory")
        if str(app_path) not in sys.path:
            sys.path.insert(0, str(app_path))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only a missing *entry-point* module is ours to report; an import that fails
        # inside the user's module is their error and keeps its traceback.
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            where = f" (app dir {app_dir})" if app_dir else " (use --app-dir to add a folder)"
            raise WorkloadError(f"module {module_name!r} not found{where}") from None
        raise
    try:
        return getattr(module, attr)
    except AttributeError:
        raise WorkloadError(
            f"module {module_name!r} has no attribute {attr!r}") from None


def load(spec: str, app_dir: str | None = None) -> Workload:
    target = import_attr(spec, app_dir)
    if not (callable(target) or isinstance(target, Workload)):
        raise WorkloadError(
            f"entry point {spec!r} is not callable (its type is {type(target).__name__}): "
            "name a function returning an autobatch.Workload, or a Workload")
    result = target() if not isinstance(target, Workload) else target
    if not isinstance(result, Workload):
        raise WorkloadError(
            f"entry point {spec!r} returned {type(result).__name__}, expected an "
            "autobatch.Workload")
    return result


KIND = WorkloadKind(
    name="entry point", usage="module:function",
    entries=(("module:func", "your own: a function returning an autobatch.Workload"),),
    # a dotted name without ':' is a mistyped entry point, reported as one
    matches=lambda spec: ":" in spec or "." in spec, load=load, catch_all=True,
    options=(KindOption("app_dir", Path,
                        "Folder put first on sys.path before importing a module:function "
                        "workload."),))
