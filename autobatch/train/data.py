"""How batches are drawn from a workload's data, and the checks run before training.

In-memory TensorData is moved to the device once and batched by index (no
DataLoader overhead, which would dominate a millisecond step); any other Dataset
goes through a DataLoader with worker processes and pinned memory on CUDA.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler, Subset

from autobatch.errors import DataError
from autobatch.workloads import Data, TensorData, Workload

# An input is a tensor, or a dict of tensors (input_ids, attention_mask, ...) that the
# model takes as one argument.
Inputs = Tensor | dict[str, Tensor]
Batch = tuple[Inputs, Tensor]
# Labels read from a Dataset without a label list, to check their range before training.
LABEL_SAMPLE = 256


def map_inputs(x: Inputs, fn: Callable[[Tensor], Tensor]) -> Inputs:
    """fn applied to an input tensor, or to each tensor of a dict-shaped input."""
    return {k: fn(v) for k, v in x.items()} if isinstance(x, dict) else fn(x)


def input_size(x: Inputs) -> int:
    """Elements in an input (all of a dict's tensors): what its memory grows with."""
    return sum(v.numel() for v in x.values()) if isinstance(x, dict) else x.numel()


def logits_of(output: object) -> Tensor:
    """The prediction tensor of a model output (tuple outputs and `.logits` objects)."""
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise DataError(f"model returned {type(output).__name__}; expected a Tensor of logits")


def labels_of(data: Data) -> Tensor | None:
    """All labels of a data set when they can be read without loading inputs."""
    if isinstance(data, TensorData):
        return data.y
    if isinstance(data, Subset):
        parent = labels_of(data.dataset)
        return None if parent is None else parent[torch.as_tensor(data.indices)]
    targets = getattr(data, "targets", None)
    return None if targets is None else torch.as_tensor(targets)


def first_batch(data: Data, size: int) -> Batch:
    """The first `size` samples (in order) as one batch, on the CPU."""
    if isinstance(data, TensorData):
        return data.x[:size], data.y[:size]
    samples = [data[i] for i in range(min(size, len(data)))]
    labels = torch.as_tensor([int(s[1]) for s in samples])
    if isinstance(samples[0][0], dict):
        return {k: torch.stack([torch.as_tensor(s[0][k]) for s in samples])
                for k in samples[0][0]}, labels
    return torch.stack([torch.as_tensor(s[0]) for s in samples]), labels


def check_data(workload: Workload, batch_size: int, model: nn.Module,
               device: torch.device) -> None:
    """Fail before training on data that cannot work: empty, too small, bad labels."""
    name = workload.name
    n_train, n_val = len(workload.train_data), len(workload.val_data)
    if n_train == 0:
        raise DataError(f"workload {name!r}: the training set is empty")
    if n_val == 0:
        raise DataError(f"workload {name!r}: the validation set is empty")
    if n_train < batch_size:
        raise DataError(f"workload {name!r}: the training set has {n_train} samples, "
                        f"fewer than one batch of {batch_size}")
    x, _ = first_batch(workload.val_data, 2)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        n_outputs = logits_of(model(map_inputs(x, lambda t: t.to(device)))).shape[-1]
    model.train(was_training)
    for split, data in (("training", workload.train_data), ("validation", workload.val_data)):
        labels = labels_of(data)
        if labels is None:  # a Dataset that keeps no label list: check a sample of it
            labels = torch.as_tensor([int(data[i][1])
                                      for i in range(min(LABEL_SAMPLE, len(data)))])
        if labels.numel() == 0:
            continue
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= n_outputs:
            raise DataError(
                f"workload {name!r}: {split} labels span {low}..{high} but the model "
                f"has {n_outputs} outputs (labels must be in 0..{n_outputs - 1})")


def to_device(loader: DataLoader, device: torch.device) -> Iterator[Batch]:
    """A loader's batches on the device (asynchronous copies from pinned memory)."""
    for x, y in loader:
        yield (map_inputs(x, lambda t: t.to(device, non_blocking=True)),
               y.to(device, non_blocking=True))


class TrainBatches:
    """An endless, reshuffled-every-epoch stream of full training batches on the device.

    Its position (epoch, batches drawn from the epoch's order, the order and the
    generator that draws the next one) is `state()`, so a paused run resumes on the
    very next batch (`load_state`). The order is drawn here for a Dataset as well, and
    read by the DataLoader through a sampler, so both paths resume the same way.
    """

    def __init__(self, data: Data, batch_size: int, device: torch.device, *, seed: int,
                 num_workers: int = 0) -> None:
        self.batch_size = batch_size
        self.size = len(data)
        self.batches_per_epoch = self.size // batch_size
        self.epoch = 0
        self.position = 0  # batches drawn from the current epoch's order
        self._order: Tensor | None = None  # None: the next batch starts a new epoch
        self._device = device
        self._generator = torch.Generator().manual_seed(seed)
        self._loader: DataLoader | None = None
        if isinstance(data, TensorData):
            self._x, self._y = data.x.to(device), data.y.to(device)
        else:
            # the loader draws its worker seeds from a generator of its own, so that
            # starting an iterator (again, on resume) leaves the order's generator alone
            self._loader = DataLoader(
                data, batch_size=batch_size, sampler=_RestOfEpoch(self), drop_last=True,
                num_workers=num_workers, generator=torch.Generator().manual_seed(seed),
                pin_memory=device.type == "cuda", persistent_workers=num_workers > 0)

    def __iter__(self) -> Iterator[Batch]:
        while True:
            if self._order is None:
                self._order = torch.randperm(self.size, generator=self._generator)
                self.position = 0
            yield from self._rest_of_epoch()
            self._order = None
            self.epoch += 1

    def remaining(self) -> list[int]:
        """The sample indices of the current epoch's full batches not drawn yet."""
        assert self._order is not None
        end = self.batches_per_epoch * self.batch_size
        return self._order[self.position * self.batch_size:end].tolist()

    def _rest_of_epoch(self) -> Iterator[Batch]:
        # position counts a batch once it is handed out: a pause after training on it
        # resumes on the next one
        if self._loader is not None:
            for batch in to_device(self._loader, self._device):
                self.position += 1
                yield batch
            return
        order = self._order.to(self._device)
        while self.position < self.batches_per_epoch:
            idx = order[self.position * self.batch_size:(self.position + 1) * self.batch_size]
            self.position += 1
            yield self._x[idx], self._y[idx]

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "order": self._order,
                "generator": self._generator.get_state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = state["epoch"], state["position"]
        self._order = state["order"]
        self._generator.set_state(state["generator"])


class _RestOfEpoch(Sampler[int]):
    """The DataLoader's sampler: the stream's current epoch from its position on."""

    def __init__(self, stream: TrainBatches) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[int]:
        return iter(self._stream.remaining())

    def __len__(self) -> int:
        return len(self._stream.remaining())


class ValBatches:
    """The validation set in order, in large batches; reusable across evaluations."""

    def __init__(self, data: Data, batch_size: int, device: torch.device,
                 num_workers: int = 0) -> None:
        self.size = len(data)
        self._device = device
        self._batch_size = batch_size
        self._loader: DataLoader | None = None
        if isinstance(data, TensorData):
            self._x, self._y = data.x.to(device), data.y.to(device)
        else:
            self._loader = DataLoader(
                data, batch_size=batch_size, num_workers=num_workers,
                pin_memory=device.type == "cuda", persistent_workers=num_workers > 0)

    def __iter__(self) -> Iterator[Batch]:
        if self._loader is not None:
            yield from to_device(self._loader, self._device)
            return
        for start in range(0, self.size, self._batch_size):
            yield self._x[start:start + self._batch_size], self._y[start:start + self._batch_size]
