"""One exception tree for everything autobatch reports to a user.

Each class carries the process exit code the CLI uses for it, so the mapping from
failure to exit status lives in one place.
"""

from __future__ import annotations


class AutobatchError(Exception):
    """Base of every error autobatch raises on purpose."""

    exit_code: int = 1


class ConfigError(AutobatchError, ValueError):
    """An option or configuration value is invalid. The message names the field."""

    exit_code = 2


class BatchTooSmallError(ConfigError):
    """The model cannot train at this batch: a batch-statistics layer (BatchNorm) saw one
    value per channel (torch: "Expected more than 1 value per channel when training")."""

    def __init__(self, batch: int, detail: str) -> None:
        super().__init__(f"the model cannot train at batch {batch}: a batch-statistics layer "
                         f"(BatchNorm) needs more than one value per channel ({detail}); "
                         f"use a batch of 2 or more (--min-batch 2)")
        self.batch, self.detail = batch, detail

    def __reduce__(self) -> tuple[type, tuple[int, str]]:
        return type(self), (self.batch, self.detail)


class WorkloadError(AutobatchError):
    """A workload cannot be loaded: unknown name, bad entry point, wrong return type."""

    exit_code = 2


class DataError(WorkloadError):
    """The workload's data cannot be used: empty, too small, labels out of range."""


class DeviceError(AutobatchError):
    """The requested device does not exist or cannot be used."""

    exit_code = 2


class TargetNotReachedError(AutobatchError):
    """No configuration reached the target accuracy."""

    exit_code = 3


class DoesNotFitError(AutobatchError):
    """Not even the smallest batch fits in the usable memory."""

    exit_code = 4


class TrialCrashed(AutobatchError):
    """The process that trained the trial died without reporting an outcome (or, for a
    user's script, without the reports the trial needs). reason: the trial's
    fail_reason."""

    reason = "crashed"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return TrialCrashed, (str(self), self.reason)


class RankDied(TrialCrashed):
    """A rank of a data-parallel run ended without reporting (killed, or crashed in
    native code); the launcher stopped the other ranks."""

    reason = "rank_died"

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return RankDied, (str(self), self.reason)


class StorageError(AutobatchError):
    """The study storage cannot be reached or used."""

    exit_code = 2


class StorageFault(StorageError):
    """The study storage failed while in use: its filesystem is read-only or full, or its
    server stayed unreachable beyond the retry window. Finished trials stay stored."""

    exit_code = 5

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # the fail_reason of the trial it interrupted

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return type(self), (str(self), self.reason)


class CheckpointError(AutobatchError):
    """A checkpoint cannot be resumed: unreadable, torn (shorter than its header says),
    corrupt (its checksum does not match), or written for another run. The caller
    restarts the run from scratch; nothing of the file was loaded."""

    exit_code = 2
