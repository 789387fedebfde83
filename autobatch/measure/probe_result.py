"""The probe's answer: the largest batch that fits, and the evidence (a plain value,
saved as JSON and fed to the later stages)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from autobatch.device import DeviceInfo
from autobatch.files import JsonFile, json_safe
from autobatch.measure.batch_search import Outcome


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """One candidate batch: outcome, peak bytes (None after OOM), steps run, seconds;
    repeat: a batch run again to measure the spread of its peak."""

    batch_size: int
    outcome: Outcome
    peak_bytes: int | None
    train_steps: int
    seconds: float
    repeat: bool = False


@dataclass(frozen=True, kw_only=True)
class ProbeResult(JsonFile):
    """The largest batch that fits, and the evidence. Memory in bytes, times in seconds.

    budget_bytes = usable_bytes x (1 - headroom) is what a batch's peak plus
    spread_bytes (the range of the repeated candidate's peaks; None in results saved
    before it was measured) must stay under. peak_bytes: the worst peak at
    max_batch_size, measured, or the memory model's between measurements.
    fits_batch_size: the largest batch the model puts under usable_bytes itself (no
    headroom). fixed_bytes + bytes_per_sample x batch is the least-squares memory
    model over every measured peak (None with a single measurement); fit_r2 needs
    three. limited_by: 'memory', 'max_batch' when even the largest allowed batch fits, or
    'time' when the probe's time budget ended the search.
    precision, channels_last: how the candidates trained (max_batch_size is then the
    largest per-device micro-batch in that precision and memory format).
    """

    workload: str
    fingerprint: str
    device: DeviceInfo
    dtype: str
    max_batch_size: int
    limited_by: str
    min_batch: int
    max_batch: int
    headroom: float
    memory_limit_bytes: int | None
    usable_bytes: int
    budget_bytes: int
    peak_bytes: int
    fixed_bytes: float | None
    bytes_per_sample: float | None
    fit_r2: float | None
    fit_max_rel_error: float | None
    attempts: tuple[Attempt, ...]
    train_steps: int
    seconds: float
    allocator: dict[str, str] = field(default_factory=dict)
    spread_bytes: int | None = None
    fits_batch_size: int | None = None
    isolation: str
    torch_version: str
    created_at: str
    from_cache: bool = False
    precision: str = "fp32"
    channels_last: bool = False
    # ranks that each probed their device: max_batch_size is the least of their answers,
    # a per-device micro-batch (the rest of the evidence is rank 0's)
    ranks: int = 1

    what = "probe result"

    def to_dict(self) -> dict[str, Any]:
        """A strict-JSON-safe dict (non-finite floats become None)."""
        return json_safe(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeResult:
        values = dict(data)
        values["device"] = DeviceInfo(**values["device"])
        values["attempts"] = tuple(Attempt(**a) for a in values["attempts"])
        return cls(**values)
