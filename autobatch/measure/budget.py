"""Time budgets of the measurements before the study.

With a --timeout, the probe, the profile and the LR range test together take at most
STAGE_SHARE of it, so that the study always has time for its seeded trials. A stage
that runs out of its share keeps what it measured and says what it left out: fewer
batch sizes timed, the noise scale from fewer draws (or none), a shorter LR sweep (or
none, and the wide LR range). The prior is then wider, never missing. What fits is
predicted by the profile's own step-time fit, so these are numbers in, numbers out.
"""

from __future__ import annotations

import math
from collections.abc import Callable

STAGE_SHARE = 0.10
# Of the stage budget, the most the memory probe may take: it stops short of batches
# whose measurement would end past it (on a CPU with plenty of memory, a batch of the
# whole training set took 25 s a measurement, 50 s of a 180 s --timeout).
PROBE_SHARE = 0.5
# Of what is left after the probe, the profile's share; the LR range test gets the rest.
PROFILE_SHARE = 0.7
MIN_DRAWS = 8  # fewer draws make the noise scale's interval uselessly wide
MIN_NOISE_WARMUP = 25
MIN_SWEEP_STEPS = 30  # a shorter LR sweep cannot show a fall and a rise of the loss


def stage_budget(timeout_s: float | None) -> float | None:
    """The seconds the stages before the study may take (None: no --timeout, no limit)."""
    return STAGE_SHARE * timeout_s if timeout_s else None


def affordable_batch(measured: list[tuple[int, float]], left_s: float, batch: int) -> int:
    """The largest batch up to `batch` whose probe measurement is predicted to end within
    left_s, from the (batch, seconds) measured so far: in proportion to the largest batch
    measured. Its seconds include a measurement's fixed cost, so a larger batch's are
    overestimated (the probe stops early rather than late) and each cut lets the next
    batch grow by about the time left over the time taken, geometrically."""
    top_b, top_s = max(measured)
    if top_s * batch <= left_s * top_b:
        return batch
    return max(0, math.floor(left_s * top_b / top_s))


def noise_plan(step_s: Callable[[int], float], *, b_small: int, b_big: int,
               warmup_batch: int, warmup_steps: int, draws: int,
               left_s: float) -> tuple[int, int] | None:
    """(warm-up steps, draws) of the noise scale that fit in `left_s` seconds, one step
    at batch B taking step_s(B) (a gradient at b_small and one at b_big per draw): as
    asked when they fit; else fewer draws, halved down to MIN_DRAWS, then fewer warm-up
    steps, down to MIN_NOISE_WARMUP; None when even that does not fit."""
    def cost(warm: int, n: int) -> float:
        return warm * step_s(warmup_batch) + n * (step_s(b_small) + step_s(b_big))

    warm, n = warmup_steps, draws
    while cost(warm, n) > left_s and n > MIN_DRAWS:
        n = max(MIN_DRAWS, n // 2)
    if cost(warm, n) > left_s:
        spare = left_s - n * (step_s(b_small) + step_s(b_big))
        warm = min(warm, math.floor(spare / step_s(warmup_batch))) if spare > 0 else 0
    if warm < min(MIN_NOISE_WARMUP, warmup_steps):
        return None
    return warm, n


def sweep_steps(step_s: float, *, steps: int, left_s: float) -> int | None:
    """How many LR-sweep steps of `step_s` seconds fit in `left_s` (at most `steps`);
    None when not even MIN_SWEEP_STEPS do."""
    fits = math.floor(left_s / step_s) if step_s > 0 else steps
    return min(steps, fits) if fits >= min(MIN_SWEEP_STEPS, steps) else None
