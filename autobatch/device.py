"""The device seam: which device to use, how to wait for it, what counts as OOM,
and how much memory a process uses and may use.

Everything that differs between CPU and CUDA in timing and memory goes through
here, so the training loop, probe and profiler stay device-agnostic.

Memory on CPU means the process's resident set (what a container limit counts):
the peak is VmHWM from /proc/self/status, reset by writing 5 to /proc/self/clear_refs.
On CUDA it means bytes reserved by torch's caching allocator (what the device must
hold, cached blocks and fragmentation included).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import platform
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from autobatch.errors import DeviceError

log = logging.getLogger(__name__)
T = TypeVar("T")

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """'auto' (CUDA if present, else CPU), 'cpu', 'cuda' or 'cuda:N'; a torch.device as is."""
    if isinstance(spec, torch.device):
        return spec
    match = _DEVICE_RE.match(spec.strip().lower())
    if not match or (match[1] != "cuda" and match[2] is not None):
        raise DeviceError(f"device must be auto, cpu, cuda or cuda:N, got {spec!r}")
    kind, index = match[1], match[2]
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {spec!r} requested but CUDA is not available here")
    n = torch.cuda.device_count()
    if index is not None and int(index) >= n:
        raise DeviceError(f"device {spec!r} does not exist: {n} CUDA device(s) visible")
    if index is None:
        # current_device() initialises CUDA; before that it is 0, and staying
        # uninitialised lets the probe fork a CUDA child.
        index = torch.cuda.current_device() if torch.cuda.is_initialized() else 0
    return torch.device("cuda", int(index))


def check_cuda_devices(indices: tuple[str, ...]) -> None:
    """Refuse CUDA device indices this machine does not have (before anything starts)."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    missing = [i for i in indices if int(i) >= count]
    if missing:
        raise DeviceError(f"devices {','.join(indices)} requested, but {count} CUDA device(s) "
                          f"are visible here (missing: {','.join(missing)})")


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels so a clock read measures finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


_OOM_MESSAGES = (
    "out of memory",
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_NOT_ENOUGH_WORKSPACE",
    "DefaultCPUAllocator: can't allocate memory",
)


def is_oom(exc: BaseException) -> bool:
    """True for allocation failures (torch's OOM, driver, cuBLAS/cuDNN, CPU allocator)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    if isinstance(exc, RuntimeError):
        text = str(exc)
        return any(m.lower() in text.lower() for m in _OOM_MESSAGES)
    return False


def run_or_oom(fn: Callable[[], T], device: torch.device) -> T | None:
    """fn(), or None when it ran out of memory (see is_oom; any other error propagates).

    The memory is released after the except block has ended: until then the
    exception's traceback keeps the failing frames, and their tensors, alive.
    """
    try:
        return fn()
    except Exception as exc:
        if not is_oom(exc):
            raise
    release_memory(device)
    return None


def release_memory(device: torch.device) -> None:
    """Return freed memory: collect cycles, empty CUDA's cache, trim glibc's heap.

    Call it after an `except` block has ended: the exception's traceback keeps the
    failing frames, and their tensors, alive until then.
    """
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    else:
        _malloc_trim()


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def proc_status_bytes(field: str, pid: int | str = "self") -> int:
    """A kB field of /proc/PID/status (VmRSS, VmHWM, RssAnon, RssFile ...) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise DeviceError(f"/proc/{pid}/status has no {field} line")


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of a process (Linux /proc), in bytes."""
    return proc_status_bytes("VmRSS", pid)


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory window for this process on `device`."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def peak_memory(device: torch.device) -> int:
    """Peak bytes since the last reset: VmHWM on CPU, max reserved bytes on CUDA."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_reserved(device))
    return proc_status_bytes("VmHWM")


def _meminfo() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        out[key] = int(rest.split()[0]) * 1024
    return out


def memory_info(device: torch.device) -> tuple[int, int]:
    """(free, total) bytes: the device's, or the system's available and total RAM on CPU."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return int(free), int(total)
    info = _meminfo()
    return info["MemAvailable"], info["MemTotal"]


def cache_location(device: torch.device) -> str:
    """Which hardware a cached measurement belongs to, without initialising CUDA (a probe
    may still fork): the host (caches in a home folder shared by a cluster's nodes),
    then the RAM size on CPU, the device index and the visible set on CUDA."""
    where = (f"cpu/{memory_info(device)[1]}" if device.type == "cpu" else
             f"cuda:{device.index}/{os.environ.get('CUDA_VISIBLE_DEVICES', '')}")
    return f"{socket.gethostname()}/{where}"


@dataclass(frozen=True, kw_only=True)
class DeviceInfo:
    """The device as seen when probing. Bytes; other_processes_bytes only from NVML."""

    type: str
    index: int | None
    name: str
    total_bytes: int
    free_bytes: int
    uuid: str | None = None
    nvml_name: str | None = None
    other_processes_bytes: int | None = None
    driver: str | None = None

    @property
    def key(self) -> str:
        """What identifies the hardware for caching: type, index, name and total memory."""
        where = self.type if self.index is None else f"{self.type}:{self.index}"
        return f"{where}/{self.name}/{self.total_bytes}"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def device_info(device: torch.device) -> DeviceInfo:
    free, total = memory_info(device)
    if device.type != "cuda":
        return DeviceInfo(type="cpu", index=None, name=cpu_name(), total_bytes=total,
                          free_bytes=free)
    props = torch.cuda.get_device_properties(device)
    uuid = str(getattr(props, "uuid", "") or "") or None
    nvml = _nvml_info(uuid)
    return DeviceInfo(type="cuda", index=device.index, name=props.name, total_bytes=total,
                      free_bytes=free, uuid=uuid, **nvml)


def _nvml_info(uuid: str | None) -> dict[str, Any]:
    """GPU name, driver and other processes' memory from NVML, matched by UUID.

    NVML is optional (no driver library in containers, other vendors): any failure
    leaves these fields empty instead of failing the probe.
    """
    if uuid is None:
        return {}
    try:
        import pynvml
    except ImportError:
        return {}
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError subclasses vary by driver; all mean "no NVML"
        log.info("NVML unavailable: %s", exc)
        return {}
    try:
        want = uuid.removeprefix("GPU-")
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            got = _text(pynvml.nvmlDeviceGetUUID(handle)).removeprefix("GPU-")
            if got != want:
                continue
            procs = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
            others = sum(p.usedGpuMemory or 0 for p in procs if p.pid != os.getpid())
            return {"nvml_name": _text(pynvml.nvmlDeviceGetName(handle)),
                    "other_processes_bytes": int(others),
                    "driver": _text(pynvml.nvmlSystemGetDriverVersion())}
        return {}
    except Exception as exc:  # a partial NVML (e.g. no process query in containers)
        log.info("NVML query failed: %s", exc)
        return {}
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # shutting down a half-initialised NVML is best effort
            pass


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


_ALLOCATOR_ENV = ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF",
                  "PYTORCH_NO_CUDA_MEMORY_CACHING", "MALLOC_ARENA_MAX",
                  "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "LD_PRELOAD")


def allocator_settings(device: torch.device) -> dict[str, str]:
    """The allocator configuration in effect: environment settings and CUDA's backend."""
    settings = {k: os.environ[k] for k in _ALLOCATOR_ENV if k in os.environ}
    if device.type == "cuda":
        settings["cuda_backend"] = str(torch.cuda.get_allocator_backend())
    return settings
