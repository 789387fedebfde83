"""Files autobatch writes: strict JSON, atomic replacement, and the cache folder.

Every result file is written to a temporary file beside it and moved into place
with os.replace, so a crash or a kill never leaves a torn file behind.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar, Self

from autobatch.errors import ConfigError

ENV_CACHE = "AUTOBATCH_CACHE_DIR"


def json_safe(value: Any) -> Any:
    """Containers and floats made strict-JSON-safe: non-finite floats become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_atomic(path: str | Path, text: str | bytes, *, what: str = "file") -> None:
    """Write text (or bytes) to path atomically; an unwritable path is a ConfigError
    naming it."""
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                   dir=path.parent or ".")
        with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as out:
            out.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # as open() would: mkstemp's 0600 hides results
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"cannot write {what} to {str(path)!r}: {exc.strerror}") from None


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def write_json(path: str | Path, data: Any, *, what: str = "file") -> None:
    write_atomic(path, json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n",
                 what=what)


class JsonFile:
    """save() and load() for a result type with to_dict() and from_dict(): strict JSON,
    written atomically, so a reader never sees half a file. `what` names it in errors."""

    what: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        raise NotImplementedError

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict(), what=self.what)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        return cls.from_dict(json.loads(Path(path).read_text()))


def cache_dir() -> Path:
    """$AUTOBATCH_CACHE_DIR, else ~/.cache/autobatch."""
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "autobatch")
