"""mnist1d-long: a built-in whose runs take minutes on a CPU, for tuning long runs.

The standard MNIST-1D is too easy to tune long runs on: with 32k samples a small model
reaches its plateau within seconds at a constant LR and then hovers, so the time to a
target near the plateau is noise. This one makes every run longer in three ways: 50,000
generated samples (the generator's 80% training part, 40,000, split 32,000 / 8,000 as
the other MNIST-1D built-ins are), a harder generator setting (1.4x the correlated
noise, 2.5x the per-point noise, more shear and scale: the signal takes epochs to
learn), and a 1-D ResNet of 64 channels (81k parameters), with ~50x the multiply-adds
per sample of the paper's CNN. The reference recipe decays its LR (Adam, cosine over
30 epochs), so it keeps improving up to its horizon instead of hovering.

Measured (reference recipe, one seed, 2-core CPU at load ~2): validation accuracy 0.84
after 1 epoch, 0.88 after 7 (99 s of training), 0.90 after 19 (180 s), 0.899 at the
horizon: the plateau is 0.90, and the target 0.88 sits two points below it. (Twice the
correlated and five times the per-point noise, tried first, capped the same model at
0.59 and overfitted after 9 epochs.)
"""

from __future__ import annotations

from functools import lru_cache

from torch import Tensor, nn

from autobatch.hyperparams import Recipe
from autobatch.schedule import Schedule
from autobatch.workloads.mnist1d import generated, split
from autobatch.workloads.workload import TensorData, Workload

NAME = "mnist1d-long"
# Overrides of the MNIST-1D generator's arguments (get_dataset_args) for this data set.
GENERATOR = {"num_samples": 50_000, "corr_noise_scale": 0.35, "iid_noise_scale": 0.05,
             "shear_scale": 0.9, "scale_coeff": 0.45}
CHANNELS = 64
REFERENCE = Recipe(batch_size=128, lr=1e-3, momentum=0.9, optimizer="adam",
                   schedule=Schedule(name="cosine", horizon="30epochs"))
# Two points below the reference's plateau (see above).
TARGET = 0.88


@lru_cache(maxsize=1)
def splits() -> tuple[TensorData, TensorData, TensorData]:
    return split(*generated(**GENERATOR))


class Block(nn.Module):
    """Two 3-tap convolutions with BatchNorm around an identity shortcut."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm1d(channels),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm1d(channels))

    def forward(self, h: Tensor) -> Tensor:
        return (h + self.body(h)).relu()


class ResNet1d(nn.Module):
    """A stem, three residual blocks at lengths 40, 20 and 10, and a linear classifier."""

    def __init__(self, channels: int = CHANNELS, length: int = 40, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, channels, 5, padding=2, bias=False), nn.BatchNorm1d(channels),
            nn.ReLU(), Block(channels), nn.MaxPool1d(2), Block(channels), nn.MaxPool1d(2),
            Block(channels))
        self.linear = nn.Linear(channels * (length // 4), classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.features(x.view(-1, 1, x.shape[-1])).flatten(1))


def long_workload() -> Workload:
    train, val, test = splits()
    return Workload(name=NAME, model_factory=ResNet1d, train_data=train, val_data=val,
                    test_data=test, reference=REFERENCE)
