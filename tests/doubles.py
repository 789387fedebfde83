"""Test doubles shared across test modules: a fake clock, models that cost a known time
or run out of memory on cue, and a memory-heavy workload.

Subprocess snippets import from here too, so these live in a module of their own
rather than in a test file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

import autobatch.train.checkpoint as checkpoint
from autobatch import TensorData, Workload
from autobatch.config import RunConfig
from autobatch.train import EvalPoint, RunResult, Segment

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


@dataclass
class ScriptedRunner:
    """A trial runner without training: the metric climbs by `rate(batch)` per second of
    training (or follows `curve(batch, seconds)`), one evaluation every 0.1 s, until the
    target, the budget, a stop or its segment's pause. A paused run's checkpoint (in
    autobatch's checkpoint format) holds its trace, which a resumed run continues."""

    rate: dict[int, float] = field(default_factory=dict)
    device: torch.device = torch.device("cpu")
    seen: list[RunConfig] = field(default_factory=list)
    curve: Callable[[int, float], float] | None = None
    can_pause: bool = True
    segments: list[Segment] = field(default_factory=list)

    def metric(self, batch: int, seconds: float) -> float:
        if self.curve is not None:
            return self.curve(batch, seconds)
        return min(1.0, self.rate[batch] * seconds)

    def run(self, config: RunConfig, on_eval, segment: Segment = Segment()) -> RunResult:
        self.seen.append(config)
        self.segments.append(segment)
        trace = ([EvalPoint(**p) for p in checkpoint.load(segment.resume)["trace"]]
                 if segment.resume else [])
        seconds = trace[-1].train_seconds if trace else 0.0
        stop = "budget"
        while seconds < config.budget.seconds - 1e-9:
            seconds = round(seconds + 0.1, 10)
            metric = self.metric(config.batch_size, seconds)
            trace.append(EvalPoint(train_seconds=seconds, steps=len(trace) + 1,
                                   samples=(len(trace) + 1) * config.batch_size,
                                   epochs=0.0, train_loss=1.0 - metric, metric=metric,
                                   eval_seconds=0.0))
            if metric >= config.target:
                stop = "target"
                if segment.keep_model:
                    Path(segment.keep_model).write_text(json.dumps(config.to_dict()))
                break
            if on_eval(trace[-1]):
                stop = "stopped"
                break
            if segment.pause and segment.pause.due(len(trace), seconds):
                stop = "paused"
                checkpoint.save(segment.pause.path, {"trace": [vars(p) for p in trace]})
                break
        hit = trace[-1] if stop == "target" else None
        return RunResult(
            workload="scripted", device="none", config=config, target_reached=hit is not None,
            time_to_target_s=hit.train_seconds if hit else None,
            steps_to_target=hit.steps if hit else None,
            samples_to_target=hit.samples if hit else None, steps=len(trace),
            samples=len(trace) * config.batch_size, epochs=0.0, train_seconds=seconds,
            eval_seconds=0.0, samples_per_s=0.0, best_metric=max(p.metric for p in trace),
            final_metric=trace[-1].metric, stop_reason=stop, trace=tuple(trace),
            peak_memory_bytes=0)
