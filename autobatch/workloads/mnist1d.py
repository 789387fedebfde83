"""MNIST-1D (Greydanus 2020): generated locally, never downloaded.

The paper's 4,000/1,000 train/test split is kept; a fixed, seeded 20% of the
training part is held out for validation and the test part is never touched by a
tune (it is the workload's test_data, for a final evaluation).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from functools import lru_cache
from importlib.metadata import version

import numpy as np
import torch
from torch import Tensor, nn

from autobatch.errors import ConfigError
from autobatch.files import cache_dir, write_atomic
from autobatch.hyperparams import Recipe
from autobatch.workloads.workload import TensorData, Workload

VAL_FRACTION = 0.2
SPLIT_SEED = 0
# The MNIST-1D reference recipe: Adam, LR 1e-2, batch 100.
KEYS = ("x", "y", "x_test", "y_test")  # the generator's arrays, as cached
REFERENCE = Recipe(batch_size=100, lr=1e-2, momentum=0.9, optimizer="adam")


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def generated(**settings: float) -> Arrays:
    """The MNIST-1D generator's arrays (x, y, x_test, y_test), kept in the cache folder:
    generating them costs ~2.5 s per 5,000 samples and process, which every worker and
    command would pay again. `settings` override the generator's arguments
    (num_samples, noise scales, ...); none: the standard data set."""
    key = "".join(f"-{name}{value:g}" for name, value in sorted(settings.items()))
    path = cache_dir() / f"mnist1d-{version('mnist1d')}{key}.npz"
    try:
        with np.load(path) as saved:
            return tuple(saved[key] for key in KEYS)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        pass  # not cached yet, or unreadable: generate it again
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    for name, value in settings.items():
        setattr(args, name, type(getattr(args, name))(value))
    raw = make_dataset(args)
    buffer = io.BytesIO()
    np.savez(buffer, **{key: raw[key] for key in KEYS})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, buffer.getvalue(), what="the MNIST-1D cache")
    except (OSError, ConfigError):
        pass  # a read-only cache folder costs time, not correctness
    return tuple(raw[key] for key in KEYS)


def split(raw_x: np.ndarray, raw_y: np.ndarray, test_x: np.ndarray,
          test_y: np.ndarray) -> tuple[TensorData, TensorData, TensorData]:
    """(train, validation, test): a fixed, seeded VAL_FRACTION of the training part held
    out for validation; the generator's test part as it is."""
    x = torch.as_tensor(raw_x, dtype=torch.float32)
    y = torch.as_tensor(raw_y, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_val = int(len(y) * VAL_FRACTION)
    val, train = perm[:n_val], perm[n_val:]
    test = TensorData(torch.as_tensor(test_x, dtype=torch.float32),
                      torch.as_tensor(test_y, dtype=torch.int64))
    return TensorData(x[train], y[train]), TensorData(x[val], y[val]), test


@lru_cache(maxsize=1)
def splits() -> tuple[TensorData, TensorData, TensorData]:
    """(train, validation, test) from the standard MNIST-1D generator."""
    return split(*generated())


class ConvNet(nn.Module):
    """The MNIST-1D paper's CNN: three stride-2 Conv1d layers of 25 channels, one linear."""

    def __init__(self, channels: int = 25, length: int = 40, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        out_len = length
        for kernel in (5, 3, 3):
            out_len = (out_len + 2 - kernel) // 2 + 1
        self.linear = nn.Linear(channels * out_len, classes)

    def forward(self, x: Tensor) -> Tensor:
        h = x.view(-1, 1, x.shape[-1])
        h = self.conv1(h).relu()
        h = self.conv2(h).relu()
        h = self.conv3(h).relu()
        return self.linear(h.flatten(1))


def mlp() -> nn.Module:
    """The MNIST-1D paper's MLP: 40-100-100-10 with ReLU."""
    return nn.Sequential(nn.Linear(40, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(),
                         nn.Linear(100, 10))


def _workload(name: str, model_factory: Callable[[], nn.Module]) -> Workload:
    train, val, test = splits()
    return Workload(name=name, model_factory=model_factory, train_data=train, val_data=val,
                    test_data=test, reference=REFERENCE)


def cnn_workload() -> Workload:
    return _workload("mnist1d-cnn", ConvNet)


def mlp_workload() -> Workload:
    return _workload("mnist1d-mlp", mlp)
