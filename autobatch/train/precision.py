"""Numeric precision and memory format of a run: autocast, the fp16 gradient scaler,
channels-last, and the rule that tells a scaler-skipped step from divergence.

bf16 and fp16 train under torch.autocast on the device's type (the weights and the
optimizer stay in fp32); fp16 scales the loss with torch.amp.GradScaler, which skips
an optimizer step whose gradients overflowed and lowers the scale. Such a step is no
divergence: a run diverges on a bad loss at a step the scaler took, or once
MAX_SKIPPED_STEPS steps in a row were skipped (the scale halves each time, so by then
no scale makes the gradients finite). channels_last stores the model's 4-D weights
and 4-D inputs in torch.channels_last (NHWC), which convolutions on CUDA and oneDNN
run faster.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autobatch.errors import ConfigError
from autobatch.hyperparams import Hyperparams, Precision
from autobatch.train.data import Inputs, first_batch, map_inputs
from autobatch.workloads import Workload

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Consecutive scaler-skipped steps after which an fp16 run counts as diverged.
MAX_SKIPPED_STEPS = 30


def check_precision(workload: Workload, precision: Precision, channels_last: bool,
                    device: torch.device) -> None:
    """Refuse, before any setup, a precision the device cannot train in and channels-last
    on inputs that are not 4-D (a batch of images)."""
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"precision 'fp16' needs a CUDA device (its gradient scaler), got "
                          f"device {device.type!r}: use bf16 on the CPU")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"precision 'bf16' is not supported by {device} "
                          f"({torch.cuda.get_device_name(device)}): use fp16")
    if channels_last:
        x, _ = first_batch(workload.train_data, 1)
        shape = {k: tuple(v.shape) for k, v in x.items()} if isinstance(x, dict) \
            else tuple(x.shape)
        if isinstance(x, dict) or x.dim() != 4:
            raise ConfigError(f"channels_last needs 4-D inputs (batch, channels, height, "
                              f"width); workload {workload.name!r} has inputs of shape "
                              f"{shape} per batch of 1")


@dataclass(frozen=True, kw_only=True)
class PrecisionPolicy:
    """How a run's forward, backward and step are computed. scaler: fp16's (None
    otherwise), mutable state that a checkpoint keeps."""

    precision: Precision = "fp32"
    channels_last: bool = False
    device_type: str = "cpu"
    scaler: torch.amp.GradScaler | None = None

    @classmethod
    def of(cls, hparams: Hyperparams, device: torch.device) -> PrecisionPolicy:
        scaler = torch.amp.GradScaler(device.type) if hparams.precision == "fp16" else None
        return cls(precision=hparams.precision, channels_last=hparams.channels_last,
                   device_type=device.type, scaler=scaler)

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """The forward pass's context: autocast to bf16/fp16, nothing for fp32."""
        if self.precision == "fp32":
            yield
            return
        with torch.autocast(self.device_type, dtype=DTYPES[self.precision]):
            yield

    def model(self, model: nn.Module) -> nn.Module:
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def inputs(self, x: Inputs) -> Inputs:
        if not self.channels_last:
            return x
        return map_inputs(x, lambda t: t.contiguous(memory_format=torch.channels_last)
                          if t.dim() == 4 else t)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimizer step; with a scaler, skipped when the gradients overflowed."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def scale(self) -> float | None:
        """The scaler's current loss scale (None without one); reading it synchronises."""
        return None if self.scaler is None else float(self.scaler.get_scale())

    def skipped(self, scale_before: float | None) -> bool:
        """Whether the last step was skipped: the scaler lowers its scale only then."""
        after = self.scale()
        return scale_before is not None and after is not None and after < scale_before

    def state(self) -> dict[str, Any] | None:
        return None if self.scaler is None else self.scaler.state_dict()

    def load_state(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state is not None:
            self.scaler.load_state_dict(state)


FP32 = PrecisionPolicy()


def is_divergence(loss_value: float, skips_in_row: int) -> bool:
    """A bad loss (non-finite, or negative: no classification loss) at a step the scaler
    took, or MAX_SKIPPED_STEPS scaler-skipped steps in a row (skips_in_row counts this
    step when it was skipped)."""
    if skips_in_row:
        return skips_in_row >= MAX_SKIPPED_STEPS
    return not math.isfinite(loss_value) or loss_value < 0
