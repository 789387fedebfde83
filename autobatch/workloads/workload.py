"""What to train: the Workload object.

A workload names a model factory, training and validation data, a loss, a metric,
an optimizer factory and, optionally, its reference recipe. The kinds of names that
load one (built-ins, torchvision models, entry points) are in kinds.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from autobatch.errors import WorkloadError
from autobatch.hyperparams import Hyperparams, OptimizerName

OptimizerFactory = Callable[[Iterable[nn.Parameter], float, float], torch.optim.Optimizer]


def sgd(params: Iterable[nn.Parameter], lr: float, momentum: float) -> torch.optim.Optimizer:
    """SGD with (heavy-ball) momentum: the default optimizer of every workload."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum)


def adam(params: Iterable[nn.Parameter], lr: float, momentum: float) -> torch.optim.Optimizer:
    """Adam with beta1 = momentum."""
    return torch.optim.Adam(params, lr=lr, betas=(momentum, 0.999))


OPTIMIZERS: dict[str, OptimizerFactory] = {"sgd": sgd, "adam": adam}


def correct_count(outputs: Tensor, targets: Tensor) -> Tensor:
    """Top-1 accuracy summed over the batch (divided by the set size afterwards)."""
    return (outputs.argmax(dim=-1) == targets).sum()


@dataclass(frozen=True)
class TensorData:
    """A data set held in memory as two tensors; small enough to live on the device."""

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise WorkloadError(
                f"TensorData needs as many labels as inputs, got {len(self.x)} inputs "
                f"and {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.x[index], self.y[index]


Data = TensorData | Dataset


@dataclass(frozen=True, kw_only=True)
class Workload:
    """Everything needed to train and evaluate one model.

    train_data / val_data: a TensorData (kept on the device, batched by index) or any
    map-style torch Dataset of (input, label) pairs (read through a DataLoader with
    num_workers worker processes); an input is a tensor or a dict of tensors, which
    the model takes as its one argument. metric_fn returns the *sum* of per-sample scores of
    a batch (default: number of correct top-1 predictions); the validation metric is
    that sum divided by the validation set size, so it lies in [0, 1].
    optimizer_factory is called as factory(params, lr, momentum).
    """

    name: str
    model_factory: Callable[[], nn.Module]
    train_data: Data
    val_data: Data
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy
    metric_fn: Callable[[Tensor, Tensor], Tensor] = correct_count
    optimizer_factory: OptimizerFactory = sgd
    reference: Hyperparams | None = None
    num_workers: int = 0
    eval_batch_size: int = 1024
    description: str = ""
    # A split that no tune ever sees, for a final evaluation as a user would make it
    # (the built-ins keep one; the benchmarks judge recommendations on it).
    test_data: Data | None = None
    # How load_workload() built it (name and data options), so another process can
    # build the same workload; None for workloads constructed in code.
    spec: dict[str, Any] | None = None
    # A framework's own trainer (autobatch.integrations), called as
    # trainer(workload, config, device, on_eval) -> RunResult in place of autobatch's
    # loop, so trials time the user's training step; None: autobatch's loop.
    trainer: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        for name in ("model_factory", "loss_fn", "metric_fn", "optimizer_factory"):
            if not callable(getattr(self, name)):
                raise WorkloadError(f"workload {self.name!r}: {name} must be callable")
        if self.trainer is not None and not callable(self.trainer):
            raise WorkloadError(f"workload {self.name!r}: trainer must be callable")
        for name in ("train_data", "val_data"):
            data = getattr(self, name)
            if not isinstance(data, (TensorData, Dataset)):
                raise WorkloadError(
                    f"workload {self.name!r}: {name} must be a TensorData or a torch "
                    f"Dataset, got {type(data).__name__}")

    def recipe(self, *, batch_size: int | None = None, lr: float | None = None,
               momentum: float | None = None, optimizer: OptimizerName | None = None,
               ) -> Hyperparams:
        """A full recipe from the values given, the rest from the reference recipe.

        An LR is only meaningful with its optimizer and schedule, so the reference
        optimizer and schedule are used only when the LR also comes from the reference.
        """
        ref = self.reference
        if lr is None and ref is None:
            raise WorkloadError(f"workload {self.name!r} has no reference recipe: give an LR")
        if batch_size is None and ref is None:
            raise WorkloadError(
                f"workload {self.name!r} has no reference recipe: give a batch size")
        from_ref = lr is None
        return Hyperparams(
            batch_size=batch_size if batch_size is not None else ref.batch_size,
            lr=lr if lr is not None else ref.lr,
            momentum=momentum if momentum is not None
            else (ref.momentum if from_ref else 0.9),
            optimizer=optimizer or (ref.optimizer if from_ref else None),
            **({"schedule": ref.schedule} if from_ref else {}))

    def fingerprint(self) -> str:
        """A short hash that changes when the model architecture or data shapes change."""
        model = self.model_factory()
        digest = hashlib.sha256()
        digest.update(self.name.encode())
        digest.update(repr(model).encode())
        digest.update(str(sum(p.numel() for p in model.parameters())).encode())
        digest.update(f"{len(self.train_data)}/{len(self.val_data)}".encode())
        for data in (self.train_data, self.val_data):  # the input size drives memory and time
            if len(data):
                x = data[0][0]
                digest.update(f"{tuple(getattr(x, 'shape', ()))}/{getattr(x, 'dtype', '')}"
                              .encode())
        return digest.hexdigest()[:16]
