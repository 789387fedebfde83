"""Gradient noise scale B_simple = tr(Sigma) / |G|^2: the critical batch estimate.

McCandlish et al. (2018): batches well below B_simple waste steps on gradient
noise, batches well above it waste samples. It is estimated from squared gradient
norms at two batch sizes (domain.md):

    E|g_B|^2 = |G|^2 + tr(Sigma) * e(B),   e(B) = 1/B  (infinite data)

so two batch sizes give two equations for |G|^2 and tr(Sigma). Batches are drawn
without replacement from N samples, where e(B) = (N - B) / (B (N - 1)); using it
removes a bias of about B_simple / N that the infinite-data formula carries.

One draw is very noisy, so the estimate is a ratio of averages over many draws at
one checkpoint (no updates between draws: the "moving averages" are plain means),
never an average of per-draw ratios, which explodes when a draw's |G|^2 is near 0.
The interval is a percentile bootstrap over draws.

The arithmetic takes numbers; `measure_noise` is the torch part.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

import autobatch.stop as stop
from autobatch.device import synchronize
from autobatch.errors import ConfigError
from autobatch.train import logits_of, train_batches, train_step
from autobatch.workloads import Workload

BOOTSTRAP_RESAMPLES = 1000
PROGRESS_EVERY = 16  # draws between progress reports


@dataclass(frozen=True, kw_only=True)
class NoiseEstimate:
    """B_simple with a bootstrap interval; None where |G|^2 is not resolved (<= 0).

    b_simple, low, high: samples. level: the interval's coverage (0.9: 5th-95th
    percentile). g2: |G|^2 estimate; trace_sigma: tr(Sigma) estimate (per-sample
    gradient covariance). warmup_steps: training steps taken before measuring.
    """

    b_simple: float | None
    low: float | None
    high: float | None
    level: float
    draws: int
    b_small: int
    b_big: int
    population: int | None
    g2: float
    trace_sigma: float
    warmup_steps: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NoiseEstimate:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


def inverse_batch(batch: int, population: int | None) -> float:
    """e(B): the variance factor of a batch mean; 1/B, finite-population corrected."""
    if population is None:
        return 1.0 / batch
    return (population - batch) / (batch * (population - 1))


def two_batch(small_sq: float, big_sq: float, b_small: int, b_big: int,
              population: int | None = None) -> tuple[float, float]:
    """(|G|^2, tr(Sigma)) from mean squared gradient norms at two batch sizes."""
    if not 1 <= b_small < b_big:
        raise ConfigError(f"need 1 <= b_small < b_big, got b_small={b_small}, b_big={b_big}")
    if population is not None and b_big > population:
        raise ConfigError(f"b_big must be <= the population {population}, got {b_big}")
    e_small, e_big = inverse_batch(b_small, population), inverse_batch(b_big, population)
    trace_sigma = (small_sq - big_sq) / (e_small - e_big)
    g2 = small_sq - trace_sigma * e_small
    return g2, trace_sigma


def b_simple(g2: float, trace_sigma: float) -> float | None:
    """tr(Sigma) / |G|^2: None when |G|^2 <= 0 (the noise hides the gradient), 0 when
    the measured noise is <= 0 (the gradient hides the noise)."""
    return max(trace_sigma, 0.0) / g2 if g2 > 0 else None


def estimate(small_sqs: Sequence[float], big_sqs: Sequence[float], b_small: int,
             b_big: int, *, population: int | None = None, level: float = 0.9,
             seed: int = 0) -> tuple[float | None, float | None, float | None, float, float]:
    """(B_simple, low, high, |G|^2, tr(Sigma)) from paired draws of squared norms.

    Draw i pairs small_sqs[i] (|g|^2 of a batch of b_small) with big_sqs[i] (batch of
    b_big). The bootstrap resamples whole draws; an unresolved resample (|G|^2 <= 0)
    counts as an infinitely large B_simple, so it widens the interval upwards, and a
    bound that lands there is None.
    """
    if len(small_sqs) != len(big_sqs) or len(small_sqs) < 2:
        raise ConfigError(f"need >= 2 paired draws, got {len(small_sqs)} small and "
                          f"{len(big_sqs)} big")
    if not 0 < level < 1:
        raise ConfigError(f"level must be in (0, 1), got {level!r}")
    g2, trace = two_batch(statistics.fmean(small_sqs), statistics.fmean(big_sqs),
                          b_small, b_big, population)
    rng = random.Random(seed)
    n = len(small_sqs)
    samples = []
    for _ in range(BOOTSTRAP_RESAMPLES):
        picks = [rng.randrange(n) for _ in range(n)]
        value = b_simple(*two_batch(statistics.fmean(small_sqs[i] for i in picks),
                                    statistics.fmean(big_sqs[i] for i in picks),
                                    b_small, b_big, population))
        samples.append(math.inf if value is None else value)
    samples.sort()
    tail = (1 - level) / 2
    low = samples[int(tail * (len(samples) - 1))]
    high = samples[math.ceil((1 - tail) * (len(samples) - 1))]
    return (b_simple(g2, trace), low if math.isfinite(low) else None,
            high if math.isfinite(high) else None, g2, trace)


def grad_sq_norm(model: nn.Module, workload: Workload, x: Tensor, y: Tensor, *,
                 keep: bool = False) -> float:
    """|g|^2 of the workload's (mean-reduced) loss on one batch; leaves .grad cleared,
    or holding that gradient with keep."""
    model.zero_grad(set_to_none=True)
    workload.loss_fn(logits_of(model(x)), y).backward()
    total = sum(float(p.grad.detach().double().pow(2).sum())
                for p in model.parameters() if p.grad is not None)
    if not keep:
        model.zero_grad(set_to_none=True)
    return total


def measure_noise(model: nn.Module, optimizer: torch.optim.Optimizer, workload: Workload,
                  device: torch.device, *, b_small: int, b_big: int, draws: int = 64,
                  warmup_steps: int = 0, warmup_batch: int | None = None, seed: int = 0,
                  level: float = 0.9, clock: Callable[[], float] = time.perf_counter,
                  progress: Callable[[str], None] | None = None) -> NoiseEstimate:
    """Train `warmup_steps` at `warmup_batch` (default b_small; B_simple means nothing
    at initialisation), then measure |g|^2 at b_small and b_big over `draws`
    independent batches each (at b_big, memory must hold one batch). progress: told
    every PROGRESS_EVERY draws ("draw 16 of 64").

    The model is trained in place: pass a model you own (the profiler passes its own).
    """
    if draws < 2:
        raise ConfigError(f"draws must be >= 2, got {draws}")
    started = clock()
    model.train()
    n = len(workload.train_data)
    if warmup_steps > 0:
        batches = iter(train_batches(workload, warmup_batch or b_small, device, seed=seed))
        for _ in range(warmup_steps):
            train_step(model, optimizer, workload, *next(batches))
    small = iter(train_batches(workload, b_small, device, seed=seed + 1))
    big = iter(train_batches(workload, b_big, device, seed=seed + 2))
    small_sqs, big_sqs = [], []
    for draw in range(1, draws + 1):
        stop.check()  # a safe point between draws (see autobatch.stop)
        small_sqs.append(grad_sq_norm(model, workload, *next(small)))
        big_sqs.append(grad_sq_norm(model, workload, *next(big)))
        if progress is not None and (draw % PROGRESS_EVERY == 0 or draw == draws):
            progress(f"draw {draw} of {draws}")
    synchronize(device)
    value, low, high, g2, trace = estimate(small_sqs, big_sqs, b_small, b_big,
                                           population=n, level=level, seed=seed)
    return NoiseEstimate(b_simple=value, low=low, high=high, level=level, draws=draws,
                         b_small=b_small, b_big=b_big, population=n, g2=g2,
                         trace_sigma=trace, warmup_steps=warmup_steps,
                         seconds=clock() - started)


def exact_noise_scale(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor],
                      x: Tensor, y: Tensor) -> tuple[float, float, float]:
    """(B_simple, |G|^2, tr(Sigma)) from per-example gradients over all of (x, y).

    The reference the estimator is checked against: exact but memory-hungry (one
    gradient per sample), for small models only; tr(Sigma) uses the unbiased
    (N - 1) variance, which is what the finite-population estimator targets.
    """
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def loss_one(p: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return loss_fn(logits_of(out), yi.unsqueeze(0))

    per_example = vmap(grad(loss_one), in_dims=(None, 0, 0))(params, x, y)
    flat = torch.cat([g.reshape(len(x), -1) for g in per_example.values()], dim=1).double()
    mean = flat.mean(dim=0)
    g2 = float(mean.pow(2).sum())
    trace = float((flat - mean).pow(2).sum() / (len(x) - 1))
    return trace / g2, g2, trace
