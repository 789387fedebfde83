"""Checkpoints of a run: everything training needs to continue exactly where it paused.

A checkpoint holds the model's and the optimizer's state, the loop's own counters
(steps, samples, seconds of training, the evaluation placement and the trace so far;
the LR schedule's position is the step count), the batch stream's position and the
state of every random generator training may draw from (torch's, CUDA's, Python's and
NumPy's). A run paused and resumed from it trains bit for bit as the uninterrupted run
on CPU with the same seed (on CUDA, as far as its kernels are deterministic).

The file is one header line, `autobatch-checkpoint 1 <payload bytes> <sha256>`, then
the torch-saved payload. It is written atomically (files.write_atomic), and a file
whose payload does not match its header (torn by a full disk or a copy, or not a
checkpoint at all) is refused with CheckpointError before anything of it is loaded,
so the caller restarts the run instead of resuming half a state.
"""

from __future__ import annotations

import hashlib
import io
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autobatch.errors import CheckpointError
from autobatch.files import write_atomic
from autobatch.hyperparams import Hyperparams

MAGIC = b"autobatch-checkpoint"
VERSION = 1
# What a checkpoint must share with the run that resumes it: the state is meaningless
# under another model, batch, optimizer or seed. The schedule may change (a constant
# trunk resumed with a cooldown) and so may target and budget (a promoted trial).
IDENTITY = ("batch_size", "lr", "momentum", "optimizer", "grad_accum", "world_size",
            "precision", "channels_last")


@dataclass(frozen=True)
class Pause:
    """Where a run pauses: once its training time reaches `seconds` or its step count
    reaches `steps` (whichever comes first), the checkpoint is written to `path`."""

    path: Path
    seconds: float | None = None
    steps: int | None = None

    def __post_init__(self) -> None:
        if self.seconds is None and self.steps is None:
            raise CheckpointError("a pause needs seconds or steps")
        if self.seconds is not None and not (math.isfinite(self.seconds) and self.seconds > 0):
            raise CheckpointError(f"pause seconds must be positive, got {self.seconds!r}")
        if self.steps is not None and self.steps < 1:
            raise CheckpointError(f"pause steps must be 1 or more, got {self.steps!r}")

    def due(self, steps: int, seconds: float) -> bool:
        return ((self.steps is not None and steps >= self.steps)
                or (self.seconds is not None and seconds >= self.seconds))


@dataclass(frozen=True)
class Segment:
    """One piece of a run: from the checkpoint at `resume` (None: from scratch), until
    `pause` (None: until it ends), with the model saved to `keep_model` when it reaches
    the target (see save_model)."""

    pause: Pause | None = None
    resume: Path | None = None
    keep_model: Path | None = None


def identity(workload_name: str, hparams: Hyperparams, seed: int) -> dict[str, Any]:
    return {"workload": workload_name, "seed": seed,
            **{name: getattr(hparams, name) for name in IDENTITY}}


def check_identity(saved: dict[str, Any], expected: dict[str, Any], path: str | Path) -> None:
    """Refuse a checkpoint written by another run (workload, recipe or seed)."""
    for name, value in expected.items():
        if saved.get(name) != value:
            raise CheckpointError(f"checkpoint {str(path)!r} was written with {name} "
                                  f"{saved.get(name)!r}, not {value!r}: it cannot resume "
                                  "this run")


def save(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` (tensors and plain values) atomically, behind its header."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    header = b"%s %d %d %s\n" % (MAGIC, VERSION, len(payload),
                                 hashlib.sha256(payload).hexdigest().encode())
    write_atomic(path, header + payload, what="the checkpoint")


def payload(path: str | Path) -> bytes:
    """The verified payload of the checkpoint at `path`; CheckpointError when it is
    unreadable, torn, corrupt or not a checkpoint (nothing of it is loaded then)."""
    where = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {where!r}: {exc.strerror}") from None
    header, newline, body = raw.partition(b"\n")
    fields = header.split(b" ")
    if not newline or len(fields) != 4 or fields[0] != MAGIC or not fields[2].isdigit():
        raise CheckpointError(f"{where!r} is not an autobatch checkpoint")
    if fields[1] != b"%d" % VERSION:
        raise CheckpointError(f"checkpoint {where!r} has format {fields[1].decode()!r}; "
                              f"this version reads {VERSION}")
    if len(body) != int(fields[2]):
        raise CheckpointError(f"checkpoint {where!r} is torn: {len(body)} of "
                              f"{int(fields[2])} bytes")
    if hashlib.sha256(body).hexdigest().encode() != fields[3]:
        raise CheckpointError(f"checkpoint {where!r} is corrupt: its checksum does not match")
    return body


def load(path: str | Path) -> dict[str, Any]:
    """The state saved at `path`, on the CPU (see payload() for what is refused)."""
    return torch.load(io.BytesIO(payload(path)), map_location="cpu", weights_only=True)


def save_model(path: str | Path, model: torch.nn.Module, state: dict[str, Any]) -> None:
    """The model's state_dict with `state` (its recipe, when it reached the target), as a
    plain torch file a pipeline loads with torch.load(path)["model"]; written atomically."""
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), **state}, buffer)
    write_atomic(path, buffer.getvalue(), what="the model")


def rng_state(device: torch.device) -> dict[str, Any]:
    """Every random generator's state; NumPy's as plain values (safe to load)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "python": random.getstate(),
            "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)]}


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
