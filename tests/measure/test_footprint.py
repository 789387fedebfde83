"""A candidate batch's memory footprint, measured in this process on the CPU."""

import torch
from torch import nn

from autobatch import Workload
from autobatch.device import rss_bytes
from autobatch.measure.footprint import Footprint
from tests.conftest import blobs


def test_footprint_here_returns_memory_after_oom():
    class Hog(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            self.hog = None
            big = torch.ones(64 * 2**20 // 4 * len(x))  # 64 MiB per sample, alive in the frame
            big += 1
            if len(x) >= 4:
                raise torch.OutOfMemoryError("CUDA out of memory (fake)")
            return self.fc(x)

    wl = Workload(name="hog", model_factory=Hog, train_data=blobs(64), val_data=blobs(16),
                  eval_batch_size=8)
    cand = Footprint.of(wl, torch.device("cpu"))
    assert not cand.here(1, n_eval=1)[0].oom  # lazy initialisation out of the way
    before = rss_bytes()
    measurement, steps = cand.here(4, n_eval=1)  # 256 MiB allocated, then OOM
    assert measurement.oom and steps == 1
    assert rss_bytes() - before < 64 * 2**20
    assert not cand.here(2, n_eval=1)[0].oom  # the next smaller attempt succeeds
