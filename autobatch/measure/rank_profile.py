"""The throughput profile of a data-parallel run: step time with its communication, and
the gradient noise scale from the ranks' own gradients.

profile_ranks() starts nproc ranks (train.launcher). Every rank takes the same fixed
steps, because decisions from a rank's own clock (measure.timing's warm-up) would let
the ranks' collectives drift apart: per global batch B (divisible by the ranks),
WARMUP_STEPS, then REPEATS repeats of STEPS steps, each rank training its B/nproc
slice in DistributedDataParallel, so rank 0's step time includes the gradient
all-reduce. t(B) is fitted per global batch at this world size (measure.step_fit).

The noise scale (McCandlish et al. 2018, appendix A) at one checkpoint after a
warm-up: every draw is one global batch; each rank's gradient of its slice (taken
under no_sync) is a draw at B_small = B/nproc, their all-reduced mean a draw at
B_big = B, and the two-batch estimator (measure.noise.estimate) gives B_simple.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
import torch.distributed as dist

from autobatch.device import device_name, run_or_oom, synchronize
from autobatch.errors import ConfigError
from autobatch.hyperparams import Precision
from autobatch.measure.noise import NoiseEstimate, estimate, grad_sq_norm
from autobatch.measure.step_fit import find_knee, fit_step_time, noise_batch_sizes
from autobatch.measure.throughput import (
    NOISE_DRAWS,
    NOISE_WARMUP_STEPS,
    ProfileResult,
    profile_recipe,
    profile_row,
)
from autobatch.measure.timing import REPEATS, SizeTiming
from autobatch.train import RunSetup, fresh_model, setup_run, train_batches
from autobatch.train.distributed import Ranks
from autobatch.train.launcher import Launch, RankJob
from autobatch.workloads import Workload, load_workload

WARMUP_STEPS = 5
STEPS = 5  # steps per timed repeat
KNEE_GAIN = 0.10


def timed_size(ranks: Ranks, workload: Workload, setup: RunSetup, batch: int,
               seed: int) -> SizeTiming:
    """One global batch size's fixed warm-up and timed repeats (seconds per step)."""
    size = SizeTiming(batch_size=batch, warmup_steps=WARMUP_STEPS, steps_per_repeat=STEPS)
    batches = iter(ranks.shard(train_batches(workload, batch, ranks.device, seed=seed + batch)))

    def steps(n: int) -> float:
        synchronize(ranks.device)
        started = time.perf_counter()
        for _ in range(n):
            setup.step(workload, *next(batches)).item()
        return time.perf_counter() - started

    def measure() -> SizeTiming:
        steps(WARMUP_STEPS)
        for _ in range(REPEATS):
            size.iter_s.append(steps(STEPS) / STEPS)
            size.data_wait.append(0.0)  # in-memory slices of one global batch
        return size

    # an OOM is agreed by all ranks (train.distributed.Agreed), so all mark the size
    size.oom = run_or_oom(measure, ranks.device) is None
    return size


def rank_noise(ranks: Ranks, workload: Workload, model: torch.nn.Module, batch: int,
               draws: int, seed: int) -> NoiseEstimate:
    """B_simple from the ranks' gradients (B_small = batch/ranks) and their all-reduced
    mean (B_big = batch), over `draws` global batches without updates between them
    (warmup_steps 0: the caller trained the model and says how long)."""
    ddp = model  # train.distributed.Agreed: DistributedDataParallel
    local = ddp.module
    batches = iter(ranks.shard(train_batches(workload, batch, ranks.device, seed=seed + 1)))
    started = time.perf_counter()
    small_sqs, big_sqs = [], []
    for _ in range(draws):
        with ddp.no_sync():  # this rank's own gradient, not yet averaged
            small = grad_sq_norm(ddp, workload, *next(batches), keep=True)
        grads = [p.grad for p in local.parameters() if p.grad is not None]
        for g in grads:
            dist.all_reduce(g)
            g /= ranks.world_size
        big = sum(float(g.double().pow(2).sum()) for g in grads)
        local.zero_grad(set_to_none=True)
        # every rank's |g|^2 is a draw at B_small: their mean is the better estimate
        small_sqs.append(ranks.mean([small])[0])
        big_sqs.append(big)
    n = len(workload.train_data)
    b_small = batch // ranks.world_size
    value, low, high, g2, trace = estimate(small_sqs, big_sqs, b_small, batch, population=n,
                                           seed=seed)
    return NoiseEstimate(b_simple=value, low=low, high=high, level=0.9, draws=draws,
                         b_small=b_small, b_big=batch, population=n, g2=g2,
                         trace_sigma=trace, warmup_steps=0,
                         seconds=time.perf_counter() - started)


def profile_rank(ranks: Ranks, address: str, spec: dict[str, Any], batch_sizes: list[int],
                 noise: tuple[int, int] | None, seed: int, numerics: dict[str, Any]
                 ) -> ProfileResult:
    """One rank's profile; noise: (warm-up steps, draws) of the noise scale, or None;
    numerics: the steps' precision and channels_last."""
    workload = load_workload(**spec)
    started = time.perf_counter()
    # each timed step is one micro-batch per rank, as measure.throughput times them
    recipe = replace(profile_recipe(workload), grad_accum=1, **numerics)
    initial = fresh_model(workload, seed=seed, private=True)
    timing = setup_run(workload, recipe, ranks.device, model=copy.deepcopy(initial))
    timing = replace(timing, model=ranks.wrap(timing.model))
    n_train = len(workload.train_data)
    sizes = [timed_size(ranks, workload, timing, b, seed) for b in batch_sizes]
    rows = [profile_row(s, n_train) for s in sizes]
    measured = [r for r in rows if r.fits]
    fit = (fit_step_time([r.batch_size for r in measured], [r.iter_s for r in measured])
           if len(measured) >= 2 else None)
    estimate_ = None
    fitting = [s.batch_size for s in sizes if not s.oom]
    # the single process's B_big (a draw leaves most of the set undrawn), whole per rank
    b_big = noise_batch_sizes(max(fitting, default=0), n_train)[1] // ranks.world_size \
        * ranks.world_size
    if noise is not None and b_big >= 2 * ranks.world_size:
        warmup_steps, draws = noise
        run = setup_run(workload, recipe, ranks.device, model=copy.deepcopy(initial))
        run = replace(run, model=ranks.wrap(run.model))
        # warmed up as one process warms up, at the recipe's batch where it splits evenly
        warm_batch = recipe.batch_size if recipe.batch_size % ranks.world_size == 0 else b_big
        warm = iter(ranks.shard(train_batches(workload, warm_batch, ranks.device, seed=seed)))
        for _ in range(warmup_steps):
            run.step(workload, *next(warm)).item()
        estimate_ = replace(rank_noise(ranks, workload, run.model, b_big, draws, seed),
                            warmup_steps=warmup_steps)
    return ProfileResult(
        workload=workload.name, device=device_name(ranks.device), train_size=n_train,
        max_batch=max(batch_sizes), rows=tuple(rows),
        alpha=fit.alpha if fit else None, beta=fit.beta if fit else None,
        b_sat=fit.b_sat if fit else None, fit_error=fit.error if fit else None,
        knee=find_knee([r.batch_size for r in measured], [r.samples_per_s for r in measured],
                       KNEE_GAIN),
        knee_gain=KNEE_GAIN, eval_pass_s=None, noise=estimate_,
        seconds=time.perf_counter() - started, torch_version=torch.__version__,
        threads=torch.get_num_threads(), ranks=ranks.world_size, **numerics)


def profile_ranks(spec: dict[str, Any], nproc: int, device: torch.device,
                  batch_sizes: Sequence[int], *, noise: bool = True, seed: int = 0,
                  noise_warmup_steps: int = NOISE_WARMUP_STEPS,
                  noise_draws: int = NOISE_DRAWS, precision: Precision = "fp32",
                  channels_last: bool = False) -> ProfileResult:
    """Rank 0's profile of the global `batch_sizes` (each divisible by nproc) on nproc
    ranks, each step in `precision` (and channels-last); the noise scale after
    noise_warmup_steps, from noise_draws global batches.
    eval_pass_s is not measured (rank 0 evaluates as one process does)."""
    uneven = [b for b in batch_sizes if b % nproc]
    if not batch_sizes or uneven:
        raise ConfigError(f"profile batch sizes must split evenly over {nproc} ranks, got "
                          f"{list(batch_sizes)}")
    job = RankJob(target="autobatch.measure.rank_profile:profile_rank",
                  args=(spec, sorted(set(batch_sizes)),
                        (noise_warmup_steps, noise_draws) if noise else None, seed,
                        {"precision": precision, "channels_last": channels_last}),
                  nproc=nproc,
                  device=device.type)
    with Launch(job) as launch:
        return launch.results()[0]

