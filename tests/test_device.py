"""The device seam's memory part on the CPU, and the one OOM classifier."""

from __future__ import annotations

import pytest
import torch

from autobatch import DeviceError
from autobatch.device import (
    device_info,
    is_oom,
    memory_info,
    peak_memory,
    release_memory,
    reset_peak_memory,
    resolve_device,
    rss_bytes,
)

CPU = torch.device("cpu")


@pytest.mark.parametrize("exc, oom", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (RuntimeError("CUDA error: out of memory"), True),
    (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate"), True),
    (RuntimeError("cuDNN error: CUDNN_STATUS_NOT_ENOUGH_WORKSPACE"), True),
    (RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory: you tried"), True),
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x8 and 3x3)"), False),
    (RuntimeError("CUDA error: an illegal memory access was encountered"), False),
    (ValueError("out of memory"), False),
])
def test_is_oom_classifies(exc, oom):
    assert is_oom(exc) is oom


def test_cpu_peak_memory_resets_and_sees_an_allocation():
    release_memory(CPU)
    reset_peak_memory(CPU)
    base = peak_memory(CPU)
    assert abs(base - rss_bytes()) < 16 * 2**20
    block = torch.ones(200 * 2**20 // 4)  # 200 MiB, touched
    peak = peak_memory(CPU)
    del block
    release_memory(CPU)
    assert peak - base >= 190 * 2**20
    assert peak_memory(CPU) >= peak - 2**20  # the peak survives the free (counters batch)
    reset_peak_memory(CPU)
    assert peak_memory(CPU) < peak - 150 * 2**20  # ... until reset


def test_cpu_memory_and_device_info():
    free, total = memory_info(CPU)
    assert 0 < free <= total
    info = device_info(CPU)
    assert info.type == "cpu" and info.total_bytes == total and info.name
    assert info.uuid is None and info.other_processes_bytes is None


def test_resolve_device_cuda_without_cuda_is_a_device_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto") == CPU


@pytest.mark.gpu
def test_cuda_peak_memory_and_nvml_info():
    dev = resolve_device("cuda")
    release_memory(dev)
    reset_peak_memory(dev)
    block = torch.ones(64 * 2**20 // 4, device=dev)
    assert peak_memory(dev) >= 64 * 2**20
    del block
    info = device_info(dev)
    assert info.type == "cuda" and info.total_bytes > info.free_bytes > 0 and info.uuid
