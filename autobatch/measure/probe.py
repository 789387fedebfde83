"""The memory probe: the largest training batch that fits, found by real training steps.

Each candidate batch builds a fresh model and optimizer from the workload, takes
STEPS_PER_CANDIDATE training steps (the first creates the optimizer state, the
second runs its forward pass while the previous gradients still exist, as in
`train.run`) and one evaluation batch, all on the workload's largest input; its
peak memory is compared with usable memory x (1 - headroom). `search.search`
chooses the candidates.

CPU: each candidate runs in a forked child that resets and reads its own peak RSS
(framework baseline included, what a container limit counts); the parent kills a
child whose RSS passes the memory limit, which counts as out of memory. A child
leaves no freed-but-cached heap behind to inflate the next candidate.
CUDA: the whole search runs in one forked child by default, so a sticky CUDA error
ends the child, not the caller; peaks are torch's reserved bytes, and a memory
limit is enforced by the caching allocator (set_per_process_memory_fraction).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from autobatch.config import RunConfig
from autobatch.device import (
    DeviceInfo,
    allocator_settings,
    cache_location,
    device_info,
    is_oom,
    memory_info,
    peak_memory,
    proc_status_bytes,
    release_memory,
    reset_peak_memory,
    resolve_device,
    rss_bytes,
    synchronize,
)
from autobatch.errors import ConfigError, DoesNotFitError
from autobatch.files import cache_dir as default_cache_dir
from autobatch.files import json_safe, write_json
from autobatch.measure.batch_search import Measurement, Outcome, search
from autobatch.measure.forked import ChildOutOfMemory, anon_bytes, run_in_child
from autobatch.train import build_optimizer, check_data, evaluate, first_batch, train_step
from autobatch.workloads import TensorData, Workload

log = logging.getLogger(__name__)

STEPS_PER_CANDIDATE = 2
SCAN_SAMPLES = 256  # samples inspected per data set to find the largest input
GIB = 1024 ** 3
CACHE_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """One candidate batch: outcome, peak bytes (None after OOM), steps run, seconds."""

    batch_size: int
    outcome: Outcome
    peak_bytes: int | None
    train_steps: int
    seconds: float


@dataclass(frozen=True, kw_only=True)
class ProbeResult:
    """The largest batch that fits, and the evidence. Memory in bytes, times in seconds.

    budget_bytes = usable_bytes x (1 - headroom) is what a batch's peak must stay
    under. fixed_bytes + bytes_per_sample x batch is the least-squares memory model
    over every measured peak (None with a single measurement); fit_r2 needs three.
    limited_by: 'memory', or 'max_batch' when even the largest allowed batch fits.
    """

    workload: str
    fingerprint: str
    device: DeviceInfo
    dtype: str
    max_batch_size: int
    limited_by: str
    min_batch: int
    max_batch: int
    headroom: float
    memory_limit_bytes: int | None
    usable_bytes: int
    budget_bytes: int
    peak_bytes: int
    fixed_bytes: float | None
    bytes_per_sample: float | None
    fit_r2: float | None
    fit_max_rel_error: float | None
    attempts: tuple[Attempt, ...]
    train_steps: int
    seconds: float
    allocator: dict[str, str] = field(default_factory=dict)
    isolation: str
    torch_version: str
    created_at: str
    from_cache: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A strict-JSON-safe dict (non-finite floats become None)."""
        return json_safe(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeResult:
        values = dict(data)
        values["device"] = DeviceInfo(**values["device"])
        values["attempts"] = tuple(Attempt(**a) for a in values["attempts"])
        return cls(**values)

    def save(self, path: str | Path) -> None:
        """Write JSON atomically (temp file + os.replace): a reader never sees half a file."""
        write_json(path, self.to_dict(), what="probe result")

    @classmethod
    def load(cls, path: str | Path) -> ProbeResult:
        return cls.from_dict(json.loads(Path(path).read_text()))


def probe(workload: Workload, *, device: str | torch.device = "auto", min_batch: int = 1,
          max_batch: int | None = None, headroom: float = 0.1,
          memory_limit: int | None = None, use_cache: bool = True,
          cache_dir: str | Path | None = None, isolate: bool = True,
          max_attempts: int = 10) -> ProbeResult:
    """The largest batch in [min_batch, max_batch] whose training peak fits the memory.

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
    when min_batch does not fit.
    """
    _check_options(min_batch, max_batch, headroom, memory_limit, max_attempts)
    dev = _resolve(device)
    model = workload.model_factory()
    check_data(workload, min_batch, model, torch.device("cpu"))
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
    key = _cache_key(fingerprint, dev, dtype, headroom, memory_limit, min_batch, max_batch)
    path = Path(cache_dir or default_cache_dir()) / f"probe-{key}.json"
    if use_cache and path.exists():
        try:
            return replace(ProbeResult.load(path), from_cache=True)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("ignoring unreadable probe cache %s: %s", path, exc)
    job = _Job(workload=workload, device=dev, min_batch=min_batch, max_batch=max_batch,
               headroom=headroom, memory_limit=memory_limit, max_attempts=max_attempts,
               fingerprint=fingerprint, dtype=dtype)
    if dev.type == "cuda" and isolate and not torch.cuda.is_initialized():
        result, _ = run_in_child(lambda _send: job.run("subprocess"), anon_cap=None)
    else:
        if dev.type == "cuda" and isolate:
            log.warning("CUDA is already initialised in this process, so the probe cannot "
                        "fork; probing in-process (a sticky CUDA error ends this process)")
        result = job.run("fork-per-candidate" if dev.type == "cpu" else "in-process")
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        result.save(path)
    return result


def _check_options(min_batch: int, max_batch: int | None, headroom: float,
                   memory_limit: int | None, max_attempts: int) -> None:
    for name, value in (("min_batch", min_batch), ("max_batch", max_batch),
                        ("max_attempts", max_attempts)):
        if value is None and name == "max_batch":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    if not (isinstance(headroom, (int, float)) and 0.0 <= headroom < 0.9):
        raise ConfigError(f"headroom must be in [0, 0.9), got {headroom!r}")
    if memory_limit is not None and (isinstance(memory_limit, bool)
                                     or not isinstance(memory_limit, int) or memory_limit < 1):
        raise ConfigError(f"memory_limit must be a number of bytes >= 1, got {memory_limit!r}")


def _resolve(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    # NVML-based availability does not initialise the CUDA driver, so a CUDA child
    # can still be forked afterwards.
    before = os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK")
    os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
    try:
        return resolve_device(device)
    finally:
        if before is None:
            del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]
        else:
            os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = before


def _cache_key(fingerprint: str, dev: torch.device, dtype: str, headroom: float,
               memory_limit: int | None, min_batch: int, max_batch: int) -> str:
    text = json.dumps([CACHE_VERSION, fingerprint, cache_location(dev), dtype, headroom,
                       memory_limit, min_batch, max_batch, torch.__version__])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


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
        sample, label = _largest_input(self.workload)
        candidate = _Candidate(workload=self.workload, device=dev, sample=sample, label=label)
        attempts: list[Attempt] = []
        warmup_steps = 0
        if dev.type == "cpu":
            # Forked children inherit this process's lazily initialised kernels; without
            # a warm-up each child pays that first-step cost (about a second) again.
            # Batch 2 at most keeps the parent small; not 1 unless min_batch is 1, since
            # BatchNorm cannot train on one sample with 1x1 feature maps.
            warmup_steps = candidate.here(min(self.min_batch, 2), n_eval=1)[1]

        def measure(batch: int) -> Measurement:
            t0 = time.perf_counter()
            if dev.type == "cpu":
                m, steps = candidate.in_fork(batch, usable)
            else:
                m, steps = candidate.here(batch)
            attempts.append(Attempt(batch_size=batch, outcome="oom" if m.oom else "fit",
                                    peak_bytes=m.peak_bytes, train_steps=steps,
                                    seconds=time.perf_counter() - t0))
            log.info("batch %d: %s, peak %s", batch, "oom" if m.oom else "ran",
                     _gib(m.peak_bytes) if m.peak_bytes else "-")
            return m

        try:
            found = search(measure, min_batch=self.min_batch, max_batch=self.max_batch,
                           budget_bytes=budget, max_attempts=self.max_attempts)
        finally:
            if restore_fraction is not None:
                torch.cuda.set_per_process_memory_fraction(restore_fraction, dev)
        attempts = [replace(a, outcome=t.outcome) for a, t in zip(attempts, found.trials,
                                                                    strict=True)]
        if found.batch_size is None:
            first = found.trials[0]
            peak = _gib(first.peak_bytes) if first.peak_bytes else "out of memory"
            raise DoesNotFitError(
                f"workload {self.workload.name!r} does not fit at batch {first.batch_size}: "
                f"peak {peak}, usable {_gib(usable)} (budget {_gib(budget)} after "
                f"{self.headroom:.0%} headroom)")
        chosen = next(t for t in reversed(found.trials) if t.batch_size == found.batch_size
                      and t.outcome == "fit")
        fit = found.fit
        return ProbeResult(
            workload=self.workload.name, fingerprint=self.fingerprint, device=info,
            dtype=self.dtype, max_batch_size=found.batch_size, limited_by=found.limited_by,
            min_batch=self.min_batch, max_batch=self.max_batch, headroom=self.headroom,
            memory_limit_bytes=self.memory_limit, usable_bytes=usable, budget_bytes=budget,
            peak_bytes=chosen.peak_bytes or 0,
            fixed_bytes=fit.fixed_bytes if fit else None,
            bytes_per_sample=fit.bytes_per_sample if fit else None,
            fit_r2=fit.r2 if fit else None, fit_max_rel_error=fit.max_rel_error if fit else None,
            attempts=tuple(attempts),
            train_steps=warmup_steps + sum(a.train_steps for a in attempts),
            seconds=time.perf_counter() - started, allocator=allocator_settings(dev),
            isolation=isolation, torch_version=torch.__version__,
            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def _cuda_fraction(dev: torch.device) -> float:
    getter = getattr(torch.cuda, "get_per_process_memory_fraction", None)
    return float(getter(dev)) if getter is not None else 1.0


def _largest_input(workload: Workload) -> tuple[torch.Tensor, torch.Tensor]:
    """The training or validation sample with the most elements (the worst case).

    In-memory tensors share one shape; other data sets are scanned at up to
    SCAN_SAMPLES evenly spaced indices each, so variable-size inputs are covered
    without reading a whole large data set.
    """
    best: tuple[torch.Tensor, torch.Tensor] | None = None
    for data in (workload.train_data, workload.val_data):
        if isinstance(data, TensorData):
            x, y = first_batch(data, 1)
            found = [(x[0], y[0])]
        else:
            n = len(data)
            step = max(1, n // SCAN_SAMPLES)
            found = [(torch.as_tensor(data[i][0]), torch.as_tensor(data[i][1]))
                     for i in range(0, n, step)]
        for x, y in found:
            if best is None or x.numel() > best[0].numel():
                best = (x, y)
    if best is None:
        raise ConfigError(f"workload {workload.name!r} has no samples to probe with")
    return best


class _OneBatch:
    """The validation-batch iterable `evaluate` expects, holding a single batch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.size = len(y)
        self._batch = (x, y)

    def __iter__(self):
        yield self._batch


def _repeat(t: torch.Tensor, n: int) -> torch.Tensor:
    return t.unsqueeze(0).repeat(n, *([1] * t.dim()))


@dataclass(kw_only=True)
class _Candidate:
    workload: Workload
    device: torch.device
    sample: torch.Tensor
    label: torch.Tensor

    def work(self, batch: int, on_step: Callable[[], None], n_eval: int | None = None,
             *, private_copy: bool = False) -> None:
        """One candidate's memory footprint, built as `train.run` builds it.

        private_copy: deep-copy the factory's model first, for in-process runs, in
        case the factory hands out an object the caller holds (`.to` and training
        would change it; a forked child only changes its own copy).
        """
        wl, dev = self.workload, self.device
        torch.manual_seed(0)
        ref = wl.reference
        config = RunConfig(batch_size=batch, lr=ref.lr if ref else 0.01, momentum=0.9,
                           optimizer=ref.optimizer if ref else None)
        # run() keeps in-memory data sets whole on the device.
        resident = [t.to(dev) for d in (wl.train_data, wl.val_data)
                    if isinstance(d, TensorData) for t in (d.x, d.y)]
        model = wl.model_factory()
        model = (copy.deepcopy(model) if private_copy else model).to(dev)
        model.train()
        optimizer = build_optimizer(wl, model, config)
        x, y = _repeat(self.sample, batch).to(dev), _repeat(self.label, batch).to(dev)
        # A DataLoader keeps up to 2 batches per worker in flight beside this one.
        in_flight = [x.clone() for _ in range(2 * wl.num_workers)] \
            if not isinstance(wl.train_data, TensorData) else []
        for _ in range(STEPS_PER_CANDIDATE):
            on_step()
            train_step(model, optimizer, wl, x, y)
        n_eval = n_eval or min(wl.eval_batch_size, len(wl.val_data))
        evaluate(model, wl, _OneBatch(_repeat(self.sample, n_eval).to(dev),
                                      _repeat(self.label, n_eval).to(dev)))
        synchronize(dev)
        del resident, in_flight

    def here(self, batch: int, n_eval: int | None = None) -> tuple[Measurement, int]:
        steps = [0]

        def count() -> None:
            steps[0] += 1

        release_memory(self.device)
        reset_peak_memory(self.device)
        oom = False
        try:
            self.work(batch, count, n_eval, private_copy=True)
            peak: int | None = peak_memory(self.device)
        except Exception as exc:
            if not is_oom(exc):
                raise
            oom, peak = True, None
        # After the except block: its traceback no longer pins the failed tensors.
        release_memory(self.device)
        return Measurement(oom=oom, peak_bytes=peak), steps[0]

    def in_fork(self, batch: int, usable: int) -> tuple[Measurement, int]:
        baseline = rss_bytes()

        def child(send: Callable[[tuple], None]) -> int:
            # libgomp's thread pool does not survive fork (a parallel region would
            # hang), so the child computes on one thread, as DataLoader workers do.
            torch.set_num_threads(1)
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


def _gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"
