"""One candidate batch's peak memory, measured by real training on the largest input.

A fresh model and optimizer from the workload take STEPS_PER_CANDIDATE training
steps (the first creates the optimizer state, the second runs its forward pass while
the previous gradients still exist, as in `train.run`) and one evaluation batch, all
on the workload's largest input.

CPU: each candidate runs in a forked child that resets and reads its own peak RSS
(framework baseline included, what a container limit counts); the parent kills a
child whose RSS passes the memory limit, which counts as out of memory. A child
leaves no freed-but-cached heap behind to inflate the next candidate.
CUDA: candidates run in this process (the probe may run the whole search in a
child); the peak is torch's reserved bytes, and an OOM is caught and released.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from autobatch.device import (
    memory_info,
    peak_memory,
    proc_status_bytes,
    release_memory,
    reset_peak_memory,
    rss_bytes,
    run_or_oom,
    synchronize,
)
from autobatch.errors import ConfigError, DoesNotFitError
from autobatch.hyperparams import Hyperparams, Precision
from autobatch.measure.batch_search import Measurement
from autobatch.measure.forked import ChildOutOfMemory, anon_bytes, run_in_child
from autobatch.train import (
    Inputs,
    check_data,
    evaluate,
    first_batch,
    fresh_model,
    input_size,
    map_inputs,
    setup_run,
)
from autobatch.workloads import TensorData, Workload

STEPS_PER_CANDIDATE = 2
SCAN_SAMPLES = 256  # samples inspected per data set to find the largest input


def largest_input(workload: Workload) -> tuple[Inputs, torch.Tensor]:
    """The training or validation sample with the most elements (the worst case).

    In-memory tensors share one shape; other data sets are scanned at up to
    SCAN_SAMPLES evenly spaced indices each, so variable-size inputs are covered
    without reading a whole large data set.
    """
    best: tuple[Inputs, torch.Tensor] | None = None
    for data in (workload.train_data, workload.val_data):
        if isinstance(data, TensorData):
            x, y = first_batch(data, 1)
            found = [(x[0], y[0])]
        else:
            n = len(data)
            step = max(1, n // SCAN_SAMPLES)
            found = [(map_inputs(data[i][0], torch.as_tensor), torch.as_tensor(data[i][1]))
                     for i in range(0, n, step)]
        for x, y in found:
            if best is None or input_size(x) > input_size(best[0]):
                best = (x, y)
    if best is None:
        raise ConfigError(f"workload {workload.name!r} has no samples to probe with")
    return best


class _OneBatch:
    """The validation-batch iterable `evaluate` expects, holding a single batch."""

    def __init__(self, x: Inputs, y: torch.Tensor) -> None:
        self.size = len(y)
        self._batch = (x, y)

    def __iter__(self) -> Iterator[tuple[Inputs, torch.Tensor]]:
        yield self._batch


def _repeat(x: Inputs, n: int, device: torch.device) -> Inputs:
    """One sample (a tensor or a dict of them) as a batch of n on the device."""
    return map_inputs(x, lambda t: t.unsqueeze(0).repeat(n, *([1] * t.dim())).to(device))


@dataclass(kw_only=True)
class Footprint:
    """Peak memory of candidate batches of `workload` on `device`, built from one sample
    (`largest_input`) repeated to the batch size, trained in `precision` and memory
    format (a batch here is one micro-batch: accumulation adds no activations)."""

    workload: Workload
    device: torch.device
    sample: Inputs
    label: torch.Tensor
    precision: Precision = "fp32"
    channels_last: bool = False

    @classmethod
    def of(cls, workload: Workload, device: torch.device, precision: Precision = "fp32",
           channels_last: bool = False) -> Footprint:
        sample, label = largest_input(workload)
        return cls(workload=workload, device=device, sample=sample, label=label,
                   precision=precision, channels_last=channels_last)

    def measure(self, batch: int, usable: int) -> tuple[Measurement, int]:
        """(the peak in bytes or an OOM, training steps started): in a forked child that
        may use up to `usable` bytes on CPU, in this process on CUDA."""
        if self.device.type == "cpu":
            return self.in_fork(batch, usable)
        return self.here(batch)

    def warm_up(self, min_batch: int, usable: int) -> tuple[Measurement, int]:
        """A warm-up in this process on CPU (none on CUDA): (its capped check, steps).

        Forked children inherit this process's lazily initialised kernels; without a
        warm-up each child pays that first-step cost (about a second) again. Batch 2
        at most keeps the parent small; not 1 unless min_batch is 1, since BatchNorm
        cannot train on one sample with 1x1 feature maps. The warm-up batch is first
        measured in a capped child, and this process runs it only once it fits: no
        step of the probe runs past `usable`. An OOM there is returned, not run.
        """
        if self.device.type != "cpu":
            return Measurement(oom=False), 0
        batch = min(min_batch, 2)
        checked, steps = self.in_fork(batch, usable)
        if checked.oom:
            return checked, steps
        return checked, steps + self.here(batch, n_eval=1)[1]

    def work(self, batch: int, on_step: Callable[[], None], n_eval: int | None = None,
             *, private_copy: bool = False) -> None:
        """One candidate's memory footprint, built as `train.run` builds it.

        private_copy: for in-process runs (see `train.fresh_model`); a forked child
        only changes its own copy.
        """
        wl, dev = self.workload, self.device
        ref = wl.reference
        hparams = Hyperparams(batch_size=batch, lr=ref.lr if ref else 0.01, momentum=0.9,
                              optimizer=ref.optimizer if ref else None,
                              precision=self.precision, channels_last=self.channels_last)
        # run() keeps in-memory data sets whole on the device.
        resident = [t.to(dev) for d in (wl.train_data, wl.val_data)
                    if isinstance(d, TensorData) for t in (d.x, d.y)]
        setup = setup_run(wl, hparams, dev, model=fresh_model(wl, seed=0, private=private_copy))
        x, y = _repeat(self.sample, batch, dev), _repeat(self.label, batch, dev)
        # A DataLoader keeps up to 2 batches per worker in flight beside this one.
        in_flight = [map_inputs(x, torch.clone) for _ in range(2 * wl.num_workers)] \
            if not isinstance(wl.train_data, TensorData) else []
        for _ in range(STEPS_PER_CANDIDATE):
            on_step()
            setup.step(wl, x, y)
        n_eval = n_eval or min(wl.eval_batch_size, len(wl.val_data))
        evaluate(setup.model, wl, _OneBatch(_repeat(self.sample, n_eval, dev),
                                            _repeat(self.label, n_eval, dev)), setup.policy)
        synchronize(dev)
        del resident, in_flight

    def here(self, batch: int, n_eval: int | None = None) -> tuple[Measurement, int]:
        """Measure in this process: (peak bytes since a reset, or OOM; steps started)."""
        steps = [0]

        def count() -> None:
            steps[0] += 1

        def peak() -> int:
            self.work(batch, count, n_eval, private_copy=True)
            reached = peak_memory(self.device)
            release_memory(self.device)  # work() has returned: its tensors are garbage
            return reached

        release_memory(self.device)
        reset_peak_memory(self.device)
        reached = run_or_oom(peak, self.device)
        return Measurement(oom=reached is None, peak_bytes=reached), steps[0]

    def in_fork(self, batch: int, usable: int) -> tuple[Measurement, int]:
        """Measure in a forked child killed past `usable` bytes of this process's RSS."""
        baseline = rss_bytes()

        def child(send: Callable[[tuple], None]) -> int:
            reset_peak_memory(self.device)
            start, file_start = rss_bytes(), proc_status_bytes("RssFile")
            send(("start", anon_bytes("self")))
            self.work(batch, lambda: send(("step",)))
            # A fork maps the parent's library pages lazily: they are missing from the
            # child's RSS until touched, and count once touched although already
            # resident in the parent. The candidate's own use is the peak's growth
            # less those pages; the process's peak is that on top of the parent's RSS.
            return peak_memory(self.device) - start - (proc_status_bytes("RssFile") - file_start)

        try:
            growth, steps = run_in_child(child, anon_cap=usable - baseline)
        except ChildOutOfMemory as oom:
            return Measurement(oom=True), oom.steps
        return Measurement(oom=False, peak_bytes=baseline + growth), steps


def check_data_capped(workload: Workload, min_batch: int, model: torch.nn.Module,
                       dev: torch.device, memory_limit: int | None) -> None:
    """check_data, which runs the model on two samples, in a forked child capped as the
    candidates are: not even that forward pass runs past the limit in this process."""
    cpu = torch.device("cpu")
    usable = (memory_limit if dev.type == "cpu" and memory_limit
              else rss_bytes() + memory_info(cpu)[0])
    try:
        run_in_child(lambda _send: check_data(workload, min_batch, model, cpu),
                     anon_cap=usable - rss_bytes())
    except ChildOutOfMemory:
        raise DoesNotFitError(f"workload {workload.name!r} does not fit: evaluating two "
                              f"samples on the CPU ran out of memory (usable "
                              f"{usable / 2**30:.2f} GiB)") from None
