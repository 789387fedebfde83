"""The configurations a study tries first (enqueued before the sampler's own)."""

from __future__ import annotations

from typing import Any

from autobatch.hyperparams import Hyperparams
from autobatch.schedule import DECAYING
from autobatch.search.prior import SEED_WARMUP, Prior
from autobatch.search.space import anchor_lr0, nearest_power_of_two


def seed_trials(prior: Prior, reference: Hyperparams | None = None) -> list[dict[str, Any]]:
    """Configurations to try first: the reference recipe (a configuration known to
    train; at the nearest batch of the space, its LR by the sqrt rule), B* with the LR
    from the range test (momentum 0.9,
    and 0.95 at the same effective LR), a third of that LR, B* with each decaying
    schedule of the space (horizon in the middle of its range, a short warmup), its
    neighbours with the linear and square-root rules, and the largest batch with the
    sqrt rule. Unless named, a seed has the space's first shape (constant when searched)
    and no warmup."""
    space = prior.space
    lr0 = prior.seed_lr0()
    anchor = space.anchor_batch
    batches = sorted(space.batch_sizes)
    up = [b for b in batches if b > anchor]
    down = [b for b in batches if b < anchor]
    # (batch, lr0, scaling, momentum); lr0 keeps lr / (1 - momentum) fixed, so the
    # second seed has the first's effective LR with more averaging of the gradients
    wanted: list[tuple[Any, ...]] = [(anchor, lr0, 1.0, 0.9), (anchor, lr0, 1.0, 0.95),
                                     (anchor, lr0 / 3, 1.0, 0.9)]
    warmup0 = space.warmup_max * SEED_WARMUP
    wanted += [(anchor, lr0, 1.0, 0.9, name, warmup0) for name in space.schedules
               if name in DECAYING]
    if up:
        wanted += [(up[0], lr0, 1.0, 0.9), (up[0], lr0, 0.5, 0.9)]
    if down:
        wanted.append((down[-1], lr0, 0.5, 0.9))
    wanted.append((batches[-1], lr0, 0.5, 0.9))
    if reference is not None and reference.optimizer == space.optimizer:
        wanted.insert(0, (nearest_power_of_two(reference.batch_size, batches),
                          anchor_lr0(reference, anchor), 0.5, reference.momentum))
    seeds: list[dict[str, Any]] = []
    for batch, lr, scaling, momentum, *shape in wanted:
        name, warmup = shape or (None, 0.0)
        params = space.raw_params(batch=batch, lr0=lr, scaling=scaling, momentum=momentum,
                                  schedule=name, warmup0=warmup)
        if params and params not in seeds:
            seeds.append(params)
    return seeds
