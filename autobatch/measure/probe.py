"""The memory probe: the largest training batch that fits, found by real training steps.

`footprint` measures a candidate batch's peak memory by training it (on CPU in a
forked child per candidate); `batch_search.search` chooses the candidates and runs
the deciding one again, since identical runs do not peak alike: a batch fits when its
peak plus that spread stays under usable memory x (1 - headroom). The result also
gives the largest batch the memory model puts under usable memory itself (no
headroom), to show what the headroom costs.

CUDA: the whole search runs in one forked child by default, so a sticky CUDA error
ends the child, not the caller (its progress lines come back through the pipe); a
memory limit is enforced by the caching allocator (set_per_process_memory_fraction).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from autobatch.config import check_headroom, check_memory_limit
from autobatch.device import (
    allocator_settings,
    cache_location,
    device_info,
    memory_info,
    release_memory,
    resolve_device,
    rss_bytes,
)
from autobatch.errors import BatchTooSmallError, ConfigError, DoesNotFitError
from autobatch.hyperparams import Precision, check_batch
from autobatch.measure.batch_search import Measurement, Trial, largest_fitting, search
from autobatch.measure.budget import affordable_batch
from autobatch.measure.cache import cached
from autobatch.measure.footprint import Footprint, check_data_capped
from autobatch.measure.forked import run_in_child
from autobatch.measure.probe_result import Attempt, ProbeResult
from autobatch.measure.timing import StepCallback
from autobatch.train.precision import check_precision
from autobatch.workloads import Workload

log = logging.getLogger(__name__)

GIB = 1024 ** 3
CACHE_VERSION = 2  # 2: the repeated candidate and the spread


def probe(workload: Workload, *, device: str | torch.device = "auto", min_batch: int = 1,
          max_batch: int | None = None, headroom: float = 0.1,
          memory_limit: int | None = None, use_cache: bool = True,
          cache_dir: str | Path | None = None, isolate: bool = True,
          max_attempts: int = 6, progress: StepCallback | None = None,
          precision: Precision = "fp32", channels_last: bool = False,
          deadline: float | None = None) -> ProbeResult:
    """The largest batch in [min_batch, max_batch] whose training peak fits the memory,
    trained in `precision` and memory format (the largest per-device micro-batch: a
    run with gradient accumulation holds one micro-batch's activations at a time).

    max_batch defaults to the training set size (training drops a last partial batch).
    headroom in [0, 0.9): the fraction of usable memory left free. memory_limit (bytes)
    caps usable memory: on CPU it applies to the process's peak resident memory; by
    default usable memory is the system's available memory (CPU) or the device's free
    memory (CUDA). Results are cached per workload fingerprint, device, dtype,
    headroom, limit and bounds under cache_dir (default $AUTOBATCH_CACHE_DIR or
    ~/.cache/autobatch); use_cache=False probes afresh. isolate (CUDA only) runs the
    search in a forked child. The workload's model is built afresh for every
    candidate; nothing the caller holds is touched.
    Raises ConfigError/DeviceError on bad options before any work, DoesNotFitError
    when min_batch does not fit. max_attempts: candidates measured, the repeat that
    measures the spread included. progress: told of each candidate ("batch 190: fit,
    peak 1.32 GiB (4 of <=6)", "batch 190 again: ..." for the repeat). deadline
    (time.perf_counter()): no candidate is measured that is predicted to end past it
    (measure.budget.affordable_batch), and the answer stops at the largest batch that
    could be measured (limited_by 'time'; such an answer is not cached).
    """
    _check_options(min_batch, max_batch, headroom, memory_limit, max_attempts)
    dev = _resolve(device)
    check_precision(workload, precision, channels_last, dev)
    model = workload.model_factory()
    check_data_capped(workload, min_batch, model, dev, memory_limit)
    n_train = len(workload.train_data)
    max_batch = n_train if max_batch is None else max_batch
    if min_batch > max_batch:
        raise ConfigError(f"min_batch {min_batch} is larger than max_batch {max_batch}")
    if max_batch > n_train:
        raise ConfigError(f"max_batch {max_batch} is larger than the training set "
                          f"({n_train} samples; training drops a last partial batch)")
    params = list(model.parameters())
    dtype = str(params[0].dtype).removeprefix("torch.") if params else "float32"
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    del model, params
    release_memory(torch.device("cpu"))
    if memory_limit is not None:
        floor = 2 * param_bytes + (rss_bytes() if dev.type == "cpu" else 0)
        if memory_limit <= floor:
            raise ConfigError(
                f"memory_limit {_gib(memory_limit)} is below the model's fixed memory "
                f"{_gib(floor)} (parameters and gradients"
                f"{' plus this process' if dev.type == 'cpu' else ''})")
    fingerprint = workload.fingerprint()
    key = json.dumps([CACHE_VERSION, fingerprint, cache_location(dev), dtype, headroom,
                      memory_limit, min_batch, max_batch, torch.__version__, precision,
                      channels_last])
    job = _Job(workload=workload, device=dev, min_batch=min_batch, max_batch=max_batch,
               headroom=headroom, memory_limit=memory_limit, max_attempts=max_attempts,
               fingerprint=fingerprint, dtype=dtype, isolate=isolate, progress=progress,
               precision=precision, channels_last=channels_last, deadline=deadline)
    return cached("probe", key, job.search,
                  lambda path: replace(ProbeResult.load(path), from_cache=True),
                  use_cache=use_cache, folder=cache_dir,
                  trusted=lambda result: result.limited_by != "time")


def _check_options(min_batch: int, max_batch: int | None, headroom: float,
                   memory_limit: int | None, max_attempts: int) -> None:
    for name, value in (("min_batch", min_batch), ("max_batch", max_batch),
                        ("max_attempts", max_attempts)):
        if value is not None:
            check_batch(name, value)
    check_headroom("headroom", headroom)
    check_memory_limit("memory_limit", memory_limit)


def _resolve(device: str | torch.device) -> torch.device:
    """resolve_device, with CUDA's availability read from NVML: that does not initialise
    the CUDA driver, so a CUDA child can still be forked afterwards."""
    before = os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK")
    os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
    try:
        return resolve_device(device)
    finally:
        if before is None:
            del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]
        else:
            os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = before


@dataclass(kw_only=True)
class _Job:
    workload: Workload
    device: torch.device
    min_batch: int
    max_batch: int
    headroom: float
    memory_limit: int | None
    max_attempts: int
    fingerprint: str
    dtype: str
    isolate: bool
    progress: StepCallback | None = None
    precision: Precision = "fp32"
    channels_last: bool = False
    deadline: float | None = None

    def search(self) -> ProbeResult:
        """The search, in a forked child on CUDA when isolating and CUDA allows it."""
        cuda = self.device.type == "cuda"
        if cuda and self.isolate and not torch.cuda.is_initialized():
            return self.in_child("subprocess")
        if cuda and self.isolate:
            log.warning("CUDA is already initialised in this process, so the probe cannot "
                        "fork; probing in-process (a sticky CUDA error ends this process)")
        return self.run("in-process" if cuda else "fork-per-candidate")

    def in_child(self, isolation: str) -> ProbeResult:
        """run() in a forked child whose progress lines come back through the pipe (its
        stderr is not the caller's view)."""
        def child(send: Callable[[tuple], None]) -> ProbeResult:
            tell = None if self.progress is None else lambda line: send(("progress", line))
            return replace(self, progress=tell).run(isolation)

        return run_in_child(child, anon_cap=None, on_progress=self.progress)[0]

    def _tell(self, trial: Trial, done: int) -> None:
        if self.progress is not None:
            outcome = trial.outcome.replace("_", " ")
            peak = f", peak {_gib(trial.peak_bytes)}" if trial.peak_bytes else ""
            again = " again" if trial.repeat else ""
            self.progress(f"batch {trial.batch_size}{again}: {outcome}{peak} "
                          f"({done} of <={self.max_attempts})")

    def run(self, isolation: str) -> ProbeResult:
        started = time.perf_counter()
        dev = self.device
        restore_fraction = None
        if dev.type == "cuda":
            torch.cuda.init()
            free, total = memory_info(dev)
            usable = min(free, self.memory_limit or free)
            if self.memory_limit is not None:
                restore_fraction = _cuda_fraction(dev)
                torch.cuda.set_per_process_memory_fraction(min(1.0, usable / total), dev)
        else:
            # The children share this process's pages, so its RSS is not extra use.
            usable = self.memory_limit or rss_bytes() + memory_info(dev)[0]
        budget = int(usable * (1.0 - self.headroom))
        info = device_info(dev)
        footprint = Footprint.of(self.workload, dev, self.precision, self.channels_last)
        attempts: list[Attempt] = []
        try:
            warm, warmup_steps = footprint.warm_up(self.min_batch, usable)
        except BatchTooSmallError as exc:  # BatchNorm on 1x1 maps: batch 1 cannot train
            if self.min_batch != 1 or self.max_batch < 2:
                raise
            log.warning("%s cannot train at batch 1 (BatchNorm needs more than one value per "
                        "channel; %s): probing from batch 2",
                        self.workload.name, exc.detail)
            self.min_batch = 2
            warm, warmup_steps = footprint.warm_up(self.min_batch, usable)
        if warm.oom:
            raise self._does_not_fit(min(self.min_batch, 2), None, usable, budget)

        def measure(batch: int) -> Measurement:
            t0 = time.perf_counter()
            m, steps = footprint.measure(batch, usable)
            attempts.append(Attempt(batch_size=batch, outcome="oom" if m.oom else "fit",
                                    peak_bytes=m.peak_bytes, train_steps=steps,
                                    seconds=time.perf_counter() - t0))
            log.info("batch %d: %s, peak %s", batch, "oom" if m.oom else "ran",
                     _gib(m.peak_bytes) if m.peak_bytes else "-")
            return m

        def affordable(batch: int) -> int:
            left = self.deadline - time.perf_counter()
            return affordable_batch([(a.batch_size, a.seconds) for a in attempts], left, batch)

        try:
            found = search(measure, min_batch=self.min_batch, max_batch=self.max_batch,
                           budget_bytes=budget, max_attempts=self.max_attempts,
                           on_trial=self._tell,
                           affordable=None if self.deadline is None else affordable)
        finally:
            if restore_fraction is not None:
                torch.cuda.set_per_process_memory_fraction(restore_fraction, dev)
        attempts = [replace(a, outcome=t.outcome, repeat=t.repeat)
                    for a, t in zip(attempts, found.trials, strict=True)]
        if found.batch_size is None:
            first = found.trials[0]
            raise self._does_not_fit(first.batch_size, first.peak_bytes, usable, budget)
        fit, spread = found.fit, found.spread_bytes or 0
        no_headroom = None if budget == usable else largest_fitting(
            found.trials, fit, usable, spread, self.max_batch)
        fits = max(found.batch_size, no_headroom[0] if no_headroom else 0)
        return ProbeResult(
            workload=self.workload.name, fingerprint=self.fingerprint, device=info,
            dtype=self.dtype, max_batch_size=found.batch_size, fits_batch_size=fits,
            limited_by=found.limited_by,
            min_batch=self.min_batch, max_batch=self.max_batch, headroom=self.headroom,
            memory_limit_bytes=self.memory_limit, usable_bytes=usable, budget_bytes=budget,
            peak_bytes=found.peak_bytes or 0, spread_bytes=found.spread_bytes,
            fixed_bytes=fit.fixed_bytes if fit else None,
            bytes_per_sample=fit.bytes_per_sample if fit else None,
            fit_r2=fit.r2 if fit else None, fit_max_rel_error=fit.max_rel_error if fit else None,
            attempts=tuple(attempts),
            train_steps=warmup_steps + sum(a.train_steps for a in attempts),
            seconds=time.perf_counter() - started, allocator=allocator_settings(dev),
            isolation=isolation, torch_version=torch.__version__,
            precision=self.precision, channels_last=self.channels_last,
            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def _does_not_fit(self, batch: int, peak: int | None, usable: int,
                      budget: int) -> DoesNotFitError:
        return DoesNotFitError(
            f"workload {self.workload.name!r} does not fit at batch {batch}: "
            f"peak {_gib(peak) if peak else 'out of memory'}, usable {_gib(usable)} "
            f"(budget {_gib(budget)} after {self.headroom:.0%} headroom)")


def _cuda_fraction(dev: torch.device) -> float:
    getter = getattr(torch.cuda, "get_per_process_memory_fraction", None)
    return float(getter(dev)) if getter is not None else 1.0


def _gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"
