"""The probe and the profile on real gloo ranks: agreed answers, global batches."""

from __future__ import annotations

import pytest
import torch

from autobatch.errors import ConfigError
from autobatch.measure.rank_probe import probe_ranks
from autobatch.measure.rank_profile import profile_ranks
from tests.conftest import FIXTURES

CPU = torch.device("cpu")
SPEC = {"spec": "user_workloads:good", "app_dir": str(FIXTURES)}


def test_the_ranks_profile_global_batches_with_the_noise_scale_from_their_gradients():
    result = profile_ranks(SPEC, 2, CPU, [16, 32, 64], noise_warmup_steps=10, noise_draws=8)
    assert result.ranks == 2 and [r.batch_size for r in result.rows] == [16, 32, 64]
    assert all(r.fits and r.iter_s > 0 for r in result.rows)
    assert result.alpha is not None and result.beta is not None
    noise = result.noise
    # each rank's gradient is a draw at half the global batch, their mean one at all of it
    assert (noise.b_small, noise.b_big, noise.population) == (16, 32, 128)
    assert (noise.warmup_steps, noise.draws) == (10, 8)
    assert noise.trace_sigma > 0


def test_profile_batch_sizes_must_split_evenly_over_the_ranks():
    with pytest.raises(ConfigError, match=r"split evenly over 2 ranks, got \[16, 33\]"):
        profile_ranks(SPEC, 2, CPU, [16, 33])


@pytest.mark.slow
def test_every_rank_probes_and_the_answer_is_per_device():
    result = probe_ranks(SPEC, 2, CPU, max_batch=64)
    assert result.ranks == 2 and result.max_batch_size == 64
