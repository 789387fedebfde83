"""Where a study keeps the checkpoints of its paused trials and the models they reach.

One folder per study: `trial-N.ckpt` holds trial N's paused state (train/checkpoint.py)
until a continuation of it has finished or the rungs drop it; `model-N.pt` holds the
model trial N had when it reached the target, while it is the study's best. Every
worker of a study must see the same folder: beside a SQLite file it defaults to
`<file stem>-checkpoints/<study name>/`; a database server needs one given
(--checkpoint-dir, on storage every worker mounts at the same path).
Written files survive a crash, Ctrl-C or kill (a resumed study resumes its paused
trials from them); a finished tune removes the folder, after handing over the kept model.
"""

from __future__ import annotations

import os
import shutil
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from autobatch.errors import ConfigError
from autobatch.storage import mask_url, storage_file


@dataclass(frozen=True)
class CheckpointStore:
    root: Path

    @classmethod
    def for_study(cls, storage_url: str, study_name: str,
                  checkpoint_dir: str | None) -> CheckpointStore:
        return cls(base_folder(storage_url, checkpoint_dir) / study_name)

    def ensure(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the checkpoint folder {str(self.root)!r}: "
                              f"{exc.strerror}") from None

    def paused(self, number: int) -> Path:
        return self.root / f"trial-{number}.ckpt"

    def model(self, number: int) -> Path:
        return self.root / f"model-{number}.pt"

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def hand_over(self, number: int, dest: str | Path) -> bool:
        """Move trial `number`'s kept model to `dest` (atomically where on one file
        system); False when it has none."""
        source = self.model(number)
        if not source.exists():
            return False
        dest = Path(dest)
        tmp = dest.with_name(f".{dest.name}.tmp")
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, dest)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ConfigError(f"cannot write the model to {str(dest)!r}: {exc.strerror}") from None
        return True

    def clear(self) -> None:
        """Remove the study's folder, and its parent when that is left empty."""
        shutil.rmtree(self.root, ignore_errors=True)
        with suppress(OSError):
            self.root.parent.rmdir()


def base_folder(storage_url: str, checkpoint_dir: str | None) -> Path:
    """Where a storage's studies keep their folders: `checkpoint_dir`, else beside a SQLite
    file; a server storage without a checkpoint_dir is refused (its workers share no
    folder)."""
    if checkpoint_dir is not None:
        return Path(checkpoint_dir).expanduser().resolve()
    if (path := storage_file(storage_url)) is not None:
        return path.parent / f"{path.stem}-checkpoints"
    raise ConfigError(f"paused trials need a folder every worker shares: give "
                      f"--checkpoint-dir for the storage {mask_url(storage_url)} "
                      "(or --rungs off to train every trial straight through)")
