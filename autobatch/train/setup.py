"""Run setup, once for every stage: the seeded model on the device, its optimizer, and
the batch streams. Training, the probe, the profiler, the LR range test and the noise
scale all start a run here, so they train the same thing the same way.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

import autobatch.stop as stop
from autobatch.device import synchronize
from autobatch.errors import BatchTooSmallError
from autobatch.hyperparams import Hyperparams
from autobatch.train.data import TrainBatches, ValBatches, logits_of
from autobatch.workloads import OPTIMIZERS, Workload

ONE_VALUE_PER_CHANNEL = "Expected more than 1 value per channel when training"


@dataclass(frozen=True)
class RunSetup:
    model: nn.Module
    optimizer: torch.optim.Optimizer


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
    training mode, with its optimizer."""
    if model is None:
        model = fresh_model(workload, seed=seed)
    model = model.to(device).train()
    return RunSetup(model=model, optimizer=build_optimizer(workload, model, hparams))


def train_batches(workload: Workload, batch_size: int, device: torch.device, *,
                  seed: int) -> TrainBatches:
    return TrainBatches(workload.train_data, batch_size, device, seed=seed,
                        num_workers=workload.num_workers)


def val_batches(workload: Workload, device: torch.device) -> ValBatches:
    return ValBatches(workload.val_data, workload.eval_batch_size, device,
                      num_workers=workload.num_workers)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, workload: Workload,
               x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One optimizer update (forward, backward, step); returns the loss, not synchronised.

    Every stage trains through here, so the start of a step is where a stop signal is
    obeyed (see autobatch.stop). A batch too small for the model's BatchNorm layers
    raises BatchTooSmallError.
    """
    stop.check()
    try:
        loss = workload.loss_fn(logits_of(model(x)), y)
    except ValueError as exc:
        if ONE_VALUE_PER_CHANNEL not in str(exc):
            raise
        raise BatchTooSmallError(len(x), str(exc).split(", got ")[-1]) from None
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


@torch.no_grad()
def evaluate(model: nn.Module, workload: Workload, batches: ValBatches) -> float:
    """Validation metric: the workload's metric summed over the set, divided by its size."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64)
    for x, y in batches:
        total += workload.metric_fn(logits_of(model(x)), y).double().cpu()
    model.train(was_training)
    return float(total) / batches.size


def timed_evaluate(model: nn.Module, workload: Workload, val: ValBatches,
                   dev: torch.device, clock: Callable[[], float]) -> tuple[float, float]:
    """(metric, seconds the evaluation took)."""
    started = clock()
    metric = evaluate(model, workload, val)
    synchronize(dev)
    return metric, clock() - started
