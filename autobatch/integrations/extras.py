"""The optional packages a framework integration needs, imported only when it is used."""

from __future__ import annotations

import importlib
from types import ModuleType

from autobatch.errors import WorkloadError


def require(module: str, extra: str) -> ModuleType:
    """Import `module`, or fail in one line naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise WorkloadError(f"{module} is not installed: pip install 'autobatch[{extra}]'") \
            from None
