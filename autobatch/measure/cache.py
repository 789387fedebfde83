"""The measurement cache: one JSON file per result under the cache folder, named by a
hash of everything the result depends on, so a repeated probe or profile on the same
hardware costs nothing. A file that cannot be read is measured afresh and replaced; a
result that fails its own quality bar (`trusted`) is neither written nor read.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from autobatch.files import JsonFile, cache_dir

log = logging.getLogger(__name__)
R = TypeVar("R", bound=JsonFile)


def cache_path(kind: str, key: str, folder: str | Path | None = None) -> Path:
    """The file of a `kind` result whose inputs `key` describes, under `folder` (default
    $AUTOBATCH_CACHE_DIR or ~/.cache/autobatch)."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return Path(folder or cache_dir()) / f"{kind}-{digest}.json"


def cached(kind: str, key: str, measure: Callable[[], R], load: Callable[[Path], R], *,
           use_cache: bool = True, folder: str | Path | None = None,
           trusted: Callable[[R], bool] = lambda result: True) -> R:
    """load() of the cached result when it is there, readable and trusted, else
    measure(), saved for next time when trusted. use_cache=False measures and neither
    reads nor writes the cache."""
    if not use_cache:
        return measure()
    path = cache_path(kind, key, folder)
    if path.exists():
        try:
            found = load(path)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("ignoring unreadable %s cache %s: %s", kind, path, exc)
        else:
            if trusted(found):
                return found
            log.warning("ignoring %s cache %s: it fails its quality bar", kind, path)
    result = measure()
    if not trusted(result):
        return result
    path.parent.mkdir(parents=True, exist_ok=True)
    result.save(path)
    return result
