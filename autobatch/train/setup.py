"""Run setup, once for every stage: the seeded model on the device, its optimizer, and
the batch streams. Training, the probe, the profiler, the LR range test and the noise
scale all start a run here, so they train the same thing the same way.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

import autobatch.stop as stop
from autobatch.device import synchronize
from autobatch.errors import BatchTooSmallError
from autobatch.hyperparams import Hyperparams
from autobatch.train.data import Inputs, TrainBatches, ValBatches, logits_of
from autobatch.train.precision import FP32, PrecisionPolicy
from autobatch.workloads import OPTIMIZERS, Workload

ONE_VALUE_PER_CHANNEL = "Expected more than 1 value per channel when training"


@dataclass(frozen=True)
class RunSetup:
    """The model (in the policy's memory format) and optimizer of a run, how it computes
    (policy) and how many micro-batches make one optimizer step (grad_accum)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    policy: PrecisionPolicy = field(default=FP32)
    grad_accum: int = 1

    def step(self, workload: Workload, x: Inputs, y: torch.Tensor) -> torch.Tensor:
        """train_step with this setup's policy and accumulation."""
        return train_step(self.model, self.optimizer, workload, x, y, policy=self.policy,
                          grad_accum=self.grad_accum)


def build_optimizer(workload: Workload, model: nn.Module,
                    hparams: Hyperparams) -> torch.optim.Optimizer:
    """The recipe's optimizer by name, else the workload's own factory."""
    factory = OPTIMIZERS[hparams.optimizer] if hparams.optimizer else workload.optimizer_factory
    return factory(model.parameters(), hparams.lr, hparams.momentum)


def set_lr(optimizer: torch.optim.Optimizer, peaks: list[float], multiplier: float) -> None:
    for group, peak in zip(optimizer.param_groups, peaks, strict=True):
        group["lr"] = peak * multiplier


def fresh_model(workload: Workload, *, seed: int | None = None,
                private: bool = False) -> nn.Module:
    """The workload factory's model, after seeding torch with `seed` when given.

    private: a deep copy, for measurements in this process: a factory may hand out
    an object the caller holds (`lambda: model`), which `.to` and training would change.
    """
    if seed is not None:
        torch.manual_seed(seed)
    model = workload.model_factory()
    return copy.deepcopy(model) if private else model


def setup_run(workload: Workload, hparams: Hyperparams, device: torch.device, *,
              seed: int | None = None, model: nn.Module | None = None) -> RunSetup:
    """`model`, else a fresh one (`fresh_model` with `seed`), moved to the device in
    training mode and the recipe's memory format, with its optimizer, precision policy
    and accumulation."""
    if model is None:
        model = fresh_model(workload, seed=seed)
    policy = PrecisionPolicy.of(hparams, device)
    model = policy.model(model.to(device).train())
    return RunSetup(model=model, optimizer=build_optimizer(workload, model, hparams),
                    policy=policy, grad_accum=hparams.grad_accum)


def train_batches(workload: Workload, batch_size: int, device: torch.device, *,
                  seed: int) -> TrainBatches:
    return TrainBatches(workload.train_data, batch_size, device, seed=seed,
                        num_workers=workload.num_workers)


def val_batches(workload: Workload, device: torch.device) -> ValBatches:
    return ValBatches(workload.val_data, workload.eval_batch_size, device,
                      num_workers=workload.num_workers)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, workload: Workload,
               x: Inputs, y: torch.Tensor, *, policy: PrecisionPolicy = FP32,
               grad_accum: int = 1) -> torch.Tensor:
    """One optimizer update over `grad_accum` equal micro-batches of the batch (forward
    and backward each, then the step); returns the batch's mean loss, not synchronised.

    Each micro-batch's loss is divided by grad_accum, so the accumulated gradient is the
    whole batch's mean. On a DistributedDataParallel model every micro-batch but the
    last runs under no_sync(): the gradients are all-reduced once per step. The previous
    step's gradients are cleared after the first forward pass, so its peak memory is
    the peak of a run without accumulation.
    Every stage trains through here, so the start of a step is where a stop signal is
    obeyed (see autobatch.stop). A batch too small for the model's BatchNorm layers
    raises BatchTooSmallError.
    """
    stop.check()
    pieces = zip(_split(x, grad_accum), y.tensor_split(grad_accum), strict=True)
    total = torch.zeros((), device=y.device)
    for i, (xs, ys) in enumerate(pieces):
        last = i == grad_accum - 1
        syncs = last or not isinstance(model, nn.parallel.DistributedDataParallel)
        with contextlib.nullcontext() if syncs else model.no_sync():
            loss = _forward(model, workload, policy, xs, ys)
            if i == 0:
                optimizer.zero_grad(set_to_none=True)
            policy.backward(loss / grad_accum if grad_accum > 1 else loss)
        if grad_accum == 1:
            total = loss
        else:
            total += loss.detach().float() / grad_accum
    policy.step(optimizer)
    return total


def _split(x: Inputs, n: int) -> list[Inputs]:
    """n equal micro-batches of an input (each tensor of a dict input alike)."""
    if n == 1:
        return [x]
    if isinstance(x, dict):
        parts = {k: v.tensor_split(n) for k, v in x.items()}
        return [{k: v[i] for k, v in parts.items()} for i in range(n)]
    return list(x.tensor_split(n))


def _forward(model: nn.Module, workload: Workload, policy: PrecisionPolicy, x: Inputs,
             y: torch.Tensor) -> torch.Tensor:
    try:
        with policy.autocast():
            return workload.loss_fn(logits_of(model(policy.inputs(x))), y)
    except ValueError as exc:
        if ONE_VALUE_PER_CHANNEL not in str(exc):
            raise
        raise BatchTooSmallError(len(y), str(exc).split(", got ")[-1]) from None


@torch.no_grad()
def evaluate(model: nn.Module, workload: Workload, batches: ValBatches,
             policy: PrecisionPolicy = FP32) -> float:
    """Validation metric: the workload's metric summed over the set, divided by its size;
    the forward passes under the run's precision policy."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64)
    for x, y in batches:
        with policy.autocast():
            logits = logits_of(model(policy.inputs(x)))
        total += workload.metric_fn(logits.float(), y).double().cpu()
    model.train(was_training)
    return float(total) / batches.size


def timed_evaluate(model: nn.Module, workload: Workload, val: ValBatches,
                   dev: torch.device, clock: Callable[[], float],
                   policy: PrecisionPolicy = FP32) -> tuple[float, float]:
    """(metric, seconds the evaluation took)."""
    started = clock()
    metric = evaluate(model, workload, val, policy)
    synchronize(dev)
    return metric, clock() - started
