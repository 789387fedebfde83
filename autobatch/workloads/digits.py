"""scikit-learn's handwritten digits (8x8, 1,797 images), shipped with the package.

A fixed, seeded 20% is the untouched test split; 20% of the rest is validation.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from autobatch.hyperparams import Recipe
from autobatch.workloads.workload import TensorData, Workload

SPLIT_SEED = 0
REFERENCE = Recipe(batch_size=32, lr=1e-3, momentum=0.9, optimizer="adam")


@lru_cache(maxsize=1)
def splits() -> tuple[TensorData, TensorData, TensorData]:
    """(train, validation, test)."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = torch.as_tensor(raw.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.as_tensor(raw.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_test = int(len(y) * 0.2)
    test, rest = perm[:n_test], perm[n_test:]
    n_val = int(len(rest) * 0.2)
    val, train = rest[:n_val], rest[n_val:]
    return tuple(TensorData(x[part], y[part]) for part in (train, val, test))


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 10))


def cnn_workload() -> Workload:
    train, val, test = splits()
    return Workload(name="digits-cnn", model_factory=small_cnn, train_data=train,
                    val_data=val, test_data=test, reference=REFERENCE)
