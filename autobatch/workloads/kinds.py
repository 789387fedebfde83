"""The registry of workload kinds: how a name on the command line becomes a Workload.

A kind recognises its names (``mnist1d-cnn``, ``torchvision:resnet18``,
``package.module:function``), declares the options it takes (``--data``,
``--app-dir``, ...), and loads the workload. The CLI and study files read the
options from here, so a new kind is one new file and one register() call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from autobatch.errors import WorkloadError
from autobatch.workloads.workload import Workload

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KindOption:
    """An option of a workload kind: a keyword of its loader, `--name-with-dashes` on the
    command line, `name-with-dashes` in a study file."""

    name: str
    type: type  # str, int, float or Path
    help: str


@dataclass(frozen=True)
class WorkloadKind:
    name: str
    usage: str  # how its names look, for messages: 'torchvision:MODEL'
    entries: tuple[tuple[str, str], ...]  # (name, description) lines of `autobatch workloads`
    matches: Callable[[str], bool]
    load: Callable[..., Workload]  # load(name, **options)
    options: tuple[KindOption, ...] = ()
    catch_all: bool = False  # matches what no other kind claims: asked last


KINDS: list[WorkloadKind] = []


def register(kind: WorkloadKind) -> None:
    """Add a kind; kinds are asked in the order registered, a catch-all after all others
    (so a kind registered later, e.g. by autobatch.integrations, still comes before it)."""
    clash = {o.name: o.type for o in all_options()}
    for option in kind.options:
        if clash.get(option.name, option.type) is not option.type:
            raise WorkloadError(f"workload option {option.name!r} is declared with two types")
    kinds = [k for k in KINDS if k.name != kind.name] + [kind]
    KINDS[:] = sorted(kinds, key=lambda k: k.catch_all)  # stable: registration order


def all_options() -> list[KindOption]:
    """Every kind's options, each name once (kinds may share one)."""
    seen: dict[str, KindOption] = {}
    for kind in KINDS:
        for option in kind.options:
            seen.setdefault(option.name, option)
    return list(seen.values())


def kind_of(spec: str) -> WorkloadKind:
    for kind in KINDS:
        if kind.matches(spec):
            return kind
    raise WorkloadError(f"unknown workload {spec!r}; " + "; or ".join(k.usage for k in KINDS))


def load_workload(spec: str, **options: Any) -> Workload:
    """Resolve a workload name with its kind's options (None: not given); see KINDS.

    The spec (name and options given) is kept on the workload, so another process
    can build the same workload.
    """
    kind = kind_of(spec)
    known = {o.name for o in all_options()}
    declared = {o.name for o in kind.options}
    given = {}
    for name, value in options.items():
        if name not in known:
            raise WorkloadError(f"unknown workload option {name!r}")
        if value is None:
            continue
        if name not in declared:  # e.g. a study file's --data under a built-in name
            log.warning("--%s does not apply to %s; ignored", name.replace("_", "-"), spec)
            continue
        given[name] = str(value) if isinstance(value, Path) else value
    return replace(kind.load(spec, **given), spec={"spec": spec, **given})
