"""Test doubles shared across test modules: a fake clock, models that cost a known time
or run out of memory on cue, and a memory-heavy workload.

Subprocess snippets import from here too, so these live in a module of their own
rather than in a test file.
"""

from __future__ import annotations

import torch
from torch import nn

from autobatch import TensorData, Workload

ALPHA, BETA = 2e-3, 1e-5  # the fake device: t(B) = 2 ms + 10 us * B


def step_times(sizes: list[int]) -> list[float]:
    """The fake device's time per step at each batch size, in seconds."""
    return [ALPHA + BETA * b for b in sizes]


class FakeClock:
    """A clock that only moves when the fake device computes."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def timed_linear_factory(clock: FakeClock, *, oom_from: int | None = None,
                         beta: float = BETA):
    """A linear model whose forward pass costs exactly ALPHA + beta * batch on `clock`,
    and raises a CUDA-style OOM in training from batch `oom_from` on.

    The class is local so deepcopy (which the profiler does) keeps the same clock: a
    closure is copied by reference.
    """

    class TimedLinear(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if oom_from is not None and len(x) >= oom_from and self.training:
                raise torch.OutOfMemoryError("CUDA out of memory (fake)")
            clock.now += ALPHA + beta * len(x)
            return super().forward(x)

    return lambda: TimedLinear(8, 3)


def jumping_linear_factory(clock: FakeClock, jumps: list[int | None], factor: float = 10.0):
    """timed_linear_factory's model whose step cost jumps `factor`x after a number of
    training forward passes: jumps[i] for the i-th model the factory makes (None or
    past the end: never), so each profile (one factory call) sees its own load."""
    made = []

    class JumpingLinear(nn.Linear):
        def __init__(self) -> None:
            super().__init__(8, 3)
            self.jump = jumps[len(made)] if len(made) < len(jumps) else None
            self.passes = 0
            made.append(self)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.passes += self.training
            slow = self.jump is not None and self.passes > self.jump
            clock.now += (ALPHA + BETA * len(x)) * (factor if slow else 1.0)
            return super().forward(x)

    return JumpingLinear


class Wide(nn.Module):
    """Memory-heavy, compute-light: each layer keeps a 128 KiB activation per sample."""

    def __init__(self) -> None:
        super().__init__()
        self.scales = nn.ParameterList(nn.Parameter(torch.ones(32768)) for _ in range(4))
        self.head = nn.Linear(32768, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for s in self.scales:
            x = torch.tanh(x * s)
        return self.head(x)


def wide_workload() -> Workload:
    """512 samples of Wide: about 1 MiB of activations per sample, a 64 MiB data set."""
    g = torch.Generator().manual_seed(0)
    data = TensorData(torch.randn(512, 32768, generator=g), torch.randint(0, 3, (512,)))
    return Workload(name="wide", model_factory=Wide, train_data=data,
                    val_data=TensorData(data.x[:16], data.y[:16]), eval_batch_size=16)
