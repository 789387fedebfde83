"""The LR range test's arithmetic: a geometric sweep, a smoothed loss, the range read off it."""

import math

import pytest

from autobatch.measure.lr_range import (
    HIGH_SPAN,
    LOW_SPAN,
    LRRange,
    smooth,
    suggest_range,
    sweep_doubt,
    sweep_lrs,
)

# LRs 1, 2, ..., 80. The loss falls from 1.1 to 1.01 over the first ten, so the smoothed
# loss (an average of the losses so far) falls too, to between 1.0 and 1.1, and is
# lowest at LR 10. Losses of 1.5 after that keep the smoothed loss above that minimum
# and below twice it; a loss of 1e6 takes it past twice the minimum at once.
LRS = [float(lr) for lr in range(1, 81)]
FALLING = [1.1 - 0.01 * i for i in range(10)]


def test_suggest_range_ends_at_the_last_lr_before_the_loss_doubles():
    losses = FALLING + [1.5] * 4 + [1e6] * 66  # past twice the minimum from LR 15
    low, high, lr_min = suggest_range(LRS, losses)
    assert lr_min == 10.0
    assert high == 14.0
    assert low == pytest.approx(10.0 / LOW_SPAN)


def test_suggest_range_caps_the_high_end_at_high_span_times_the_minimum():
    losses = FALLING + [1.5] * 70  # never twice the minimum
    assert suggest_range(LRS, losses) == (pytest.approx(10.0 / LOW_SPAN),
                                         10.0 * HIGH_SPAN, 10.0)


def test_suggest_range_skips_non_finite_losses():
    losses = FALLING + [1.5] * 4 + [1e6] + [math.nan] * 65
    assert suggest_range(LRS, losses)[1:] == (14.0, 10.0)


def test_suggest_range_needs_three_finite_losses():
    with pytest.raises(ValueError, match="diverged at once"):
        suggest_range([1.0, 2.0, 3.0], [1.0, math.inf, math.nan])


def test_smooth_is_a_bias_corrected_moving_average():
    assert smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])
    # beta 0.5: the newer loss weighs twice the older, and the weights are normalised
    assert smooth([1.0, 3.0], beta=0.5) == pytest.approx([1.0, (0.25 * 1.0 + 0.5 * 3.0) / 0.75])


def test_sweep_lrs_are_geometric_from_start_to_stop():
    lrs = sweep_lrs(1e-3, 10.0, 5)
    assert lrs == pytest.approx([1e-3, 1e-2, 1e-1, 1.0, 10.0])



def sweep(losses: list[float], high: float = 1.0) -> LRRange:
    return LRRange(low=high / 150, high=high, lr_at_min_loss=high / 5, batch_size=64,
                   momentum=0.9, lrs=tuple(LRS[:len(losses)]), losses=tuple(losses), seconds=1.0)


def test_a_sweep_whose_loss_never_fell_clearly_is_doubted():
    assert sweep_doubt(sweep([2.3, 2.31, 2.29, 2.3, 2.3, 2.28, 2.35, 9.0])) is not None
    assert sweep_doubt(sweep([2.3, 2.2, 2.0, 1.6, 1.2, 1.0, 0.9, 0.8])) is None
    # lowest at the very start, then up: no training seen
    assert sweep_doubt(sweep([1.0, 0.1] + [2.3] * 30)) is not None
    # a 7% fall, lowest late in the sweep: a fast sweep of a model that trains
    assert sweep_doubt(sweep([2.30] * 70 + [2.0] * 20 + [9.0] * 2)) is None


def test_a_range_far_below_the_reference_lr_is_doubted():
    falling = [2.3, 2.2, 2.0, 1.6, 1.2, 1.0, 0.9, 0.8]
    assert sweep_doubt(sweep(falling, high=7.6e-5), reference_lr=0.3) is not None
    assert sweep_doubt(sweep(falling, high=0.1), reference_lr=0.3) is None
