"""The memory probe of a data-parallel run: every rank probes its device, all agree.

probe_ranks() starts nproc ranks (train.launcher); each runs the probe (measure.probe)
on its own device, afresh and in its own process, and the ranks all-reduce the MIN of
their largest batch: the per-device micro-batch every rank can train. A global batch
is that times the ranks (and the accumulation steps).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from autobatch.measure.probe import probe
from autobatch.measure.probe_result import ProbeResult
from autobatch.train.distributed import Ranks
from autobatch.train.launcher import Launch, RankJob
from autobatch.workloads import load_workload


def probe_rank(ranks: Ranks, address: str, spec: dict[str, Any],
               options: dict[str, Any]) -> ProbeResult:
    """One rank's probe, with the agreed (least) largest batch."""
    # the rank is the isolated process, and ranks must not share one cache entry
    mine = probe(load_workload(**spec), device=ranks.device, use_cache=False, isolate=False,
                 **options)
    return replace(mine, max_batch_size=ranks.minimum(mine.max_batch_size),
                   ranks=ranks.world_size)


def probe_ranks(spec: dict[str, Any], nproc: int, device: torch.device,
                **options: Any) -> ProbeResult:
    """Rank 0's probe result with the ranks' agreed largest per-device batch. options:
    probe()'s min_batch, max_batch, headroom, memory_limit, max_attempts (no progress
    callback: the ranks are other processes)."""
    job = RankJob(target="autobatch.measure.rank_probe:probe_rank", args=(spec, options),
                  nproc=nproc, device=device.type)
    with Launch(job) as launch:
        return launch.results()[0]
