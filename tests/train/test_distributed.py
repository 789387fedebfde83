"""Data-parallel runs on real gloo ranks: the same training as one process at the same
global batch, and the loop's refusal to pause them."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from autobatch.config import Budget, RunConfig
from autobatch.errors import ConfigError
from autobatch.train import Pause, run
from autobatch.train.distributed import SOLO, Ranks, Solo
from autobatch.train.launcher import Launch, RankJob
from autobatch.workloads import load_workload
from tests.conftest import FIXTURES

CPU = torch.device("cpu")
SPEC = {"spec": "user_workloads:good", "app_dir": str(FIXTURES)}  # a Linear: no BatchNorm


def trained_parameters(ranks: Solo, address: str, config: RunConfig) -> list[torch.Tensor]:
    """The parameters after `config`'s run on this rank (a rank target, see launcher)."""
    workload = load_workload(**SPEC)
    made: list[torch.nn.Module] = []

    def factory() -> torch.nn.Module:
        made.append(workload.model_factory())
        return made[-1]

    device = ranks.device if isinstance(ranks, Ranks) else CPU
    run(replace(workload, model_factory=factory), config, device=device, ranks=ranks)
    return [p.detach().clone() for p in made[-1].parameters()]


def test_two_ranks_accumulating_train_what_one_process_trains_at_the_same_global_batch():
    config = RunConfig(batch_size=32, lr=0.1, momentum=0.9, budget=Budget(steps=7), seed=5)
    alone = trained_parameters(SOLO, "", config)
    # 2 ranks x 2 micro-batches of 8: DDP's all-reduce once per step, under no_sync before
    job = RankJob(target="tests.train.test_distributed:trained_parameters",
                  args=(replace(config, world_size=2, grad_accum=2),), nproc=2, device="cpu")
    with Launch(job) as launch:
        rank0, rank1 = launch.results()
    # 7 steps of 32 samples span epochs 1 and 2 (128 samples): both reshuffles agree
    for a, b, c in zip(alone, rank0, rank1, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(c, b, rtol=0, atol=0)  # DDP keeps the ranks identical
    assert not torch.equal(alone[0], load_workload(**SPEC).model_factory().weight)


def test_a_run_of_several_ranks_refuses_to_pause(tmp_path):
    ranks = Ranks(rank=0, world_size=2, device=CPU)  # refused before any collective
    config = RunConfig(batch_size=32, lr=0.1, budget=Budget(steps=2), world_size=2)
    with pytest.raises(ConfigError, match="a run of 2 ranks cannot pause or resume"):
        run(load_workload(**SPEC), config, device=CPU, ranks=ranks,
            pause=Pause(path=tmp_path / "ckpt", steps=1))


def test_a_rank_takes_its_slice_of_the_global_batch():
    x, y = torch.arange(12).reshape(6, 2), torch.arange(6)
    parts = [next(iter(Ranks(rank=r, world_size=3, device=CPU).shard([(x, y)])))
             for r in range(3)]
    assert [p[1].tolist() for p in parts] == [[0, 1], [2, 3], [4, 5]]
    assert torch.equal(torch.cat([p[0] for p in parts]), x)
