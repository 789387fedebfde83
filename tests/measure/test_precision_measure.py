"""The probe and the profile measure in the chosen precision and memory format."""

import pytest
import torch
from torch import nn

from autobatch import ConfigError, Workload, probe, profile
from autobatch.measure.probe_result import ProbeResult
from tests.conftest import blobs, tiny_workload

OOM = "CUDA out of memory. Tried to allocate 2.00 GiB"


class AutocastSeen(nn.Linear):
    """Linear(8, 3) that notes whether its training forward ran under CPU autocast, and
    runs out of memory from batch 23 on."""

    seen: list[bool] = []

    def __init__(self) -> None:
        super().__init__(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            AutocastSeen.seen.append(torch.is_autocast_enabled("cpu"))
            if len(x) >= 23:
                raise torch.OutOfMemoryError(OOM)
        return super().forward(x)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(tmp_path / "cache"))
    AutocastSeen.seen.clear()
    return tmp_path / "cache"


def workload() -> Workload:
    return Workload(name="probe-tiny", model_factory=AutocastSeen, train_data=blobs(64),
                    val_data=blobs(16), eval_batch_size=8)


def test_probe_trains_its_candidates_in_the_precision(tmp_path):
    bf16 = probe(workload(), device="cpu", precision="bf16", max_batch=16)
    assert (bf16.precision, bf16.max_batch_size) == ("bf16", 16)
    assert AutocastSeen.seen and all(AutocastSeen.seen)  # the in-process warm-up step
    assert probe(workload(), device="cpu", precision="bf16", max_batch=16).from_cache
    bf16.save(tmp_path / "probe.json")
    assert ProbeResult.load(tmp_path / "probe.json").precision == "bf16"


@pytest.mark.slow
def test_probe_caches_each_precision_apart():
    bf16 = probe(workload(), device="cpu", precision="bf16", max_batch=16)
    fp32 = probe(workload(), device="cpu", max_batch=16)
    assert (bf16.precision, fp32.precision, fp32.from_cache) == ("bf16", "fp32", False)


def test_profile_times_its_steps_in_the_precision():
    wl = tiny_workload(model_factory=AutocastSeen)
    result = profile(wl, device="cpu", batch_sizes=[8, 16], noise=False, precision="bf16")
    assert result.precision == "bf16" and all(r.fits for r in result.rows)
    assert AutocastSeen.seen and all(AutocastSeen.seen)
    assert result.predict_iter_s(16, grad_accum=2) == pytest.approx(
        2 * result.alpha + result.beta * 16)


@pytest.mark.parametrize("measure", [probe, profile])
def test_probe_and_profile_refuse_channels_last_on_2d_inputs(measure):
    with pytest.raises(ConfigError, match="channels_last needs 4-D inputs"):
        measure(workload(), device="cpu", channels_last=True)
