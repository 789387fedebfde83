"""Whether the machine's speed drifted during the study: each finished trial's measured
samples/s against the profile's prediction at its batch.

ratio = measured / predicted samples/s (below 1: slower than when profiled). The
median over the last DRIFT_WINDOW trials beyond DRIFT_LIMIT either way is a drift:
warned once, and again each time it grows DRIFT_LIMIT-fold further; best.json records
it (speed_drift). Trials of fewer than MIN_STEPS steps are left out: their first
steps at a new shape run 10-50x slower, so their samples/s says little about the
machine. Arithmetic in pure functions, tested exactly.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

import autobatch.keys as keys
from autobatch.events import EventCallback, TuneEvent
from autobatch.measure import ProfileResult

DRIFT_WINDOW = 5
DRIFT_LIMIT = 1.5
MIN_STEPS = 20


def speed_ratio(trial: FrozenTrial, profile: ProfileResult) -> float | None:
    """The trial's measured samples/s over the profile's prediction at its batch."""
    attrs = trial.user_attrs
    batch, measured = attrs.get("batch_size"), attrs.get(keys.SAMPLES_PER_S)
    if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED) or not batch \
            or not measured or (attrs.get(keys.STEPS) or 0) < MIN_STEPS:
        return None
    predicted = profile.predict_iter_s(batch)
    return measured * predicted / batch if predicted else None


def ratios(trials: Sequence[FrozenTrial], profile: ProfileResult) -> list[float]:
    """Speed ratios of the finished trials, in trial order."""
    found = (speed_ratio(t, profile) for t in sorted(trials, key=lambda t: t.number))
    return [r for r in found if r is not None]


def window_median(values: Sequence[float], window: int = DRIFT_WINDOW) -> float | None:
    """The median of the last `window` values; None until there are that many."""
    return statistics.median(values[-window:]) if len(values) >= window else None


def drifted(ratio: float, warned: float | None, limit: float = DRIFT_LIMIT) -> bool:
    """Beyond `limit` either way, and (after a warning at `warned`) `limit`-fold further."""
    drift = abs(math.log(ratio))
    floor = math.log(limit) + (abs(math.log(warned)) if warned is not None else 0.0)
    return drift >= floor - 1e-12


def speed_drift(values: Sequence[float], window: int = DRIFT_WINDOW) -> dict[str, Any] | None:
    """best.json's speed_drift: the last window's median ratio, the most extreme window
    median of the study, and how many trials were compared (None: too few)."""
    medians = [window_median(values[:end], window) for end in range(window, len(values) + 1)]
    if not medians:
        return None
    return {"median_ratio": medians[-1], "trials": len(values), "window": window,
            "worst_ratio": max(medians, key=lambda m: abs(math.log(m))),
            "limit": DRIFT_LIMIT}


def drift_message(ratio: float, recent: Sequence[float]) -> str:
    way = "slower" if ratio < 1 else "faster"
    factor = 1 / ratio if ratio < 1 else ratio
    return (f"the machine's speed drifted: the last {len(recent)} trials ran {factor:.1f}x "
            f"{way} than the profile predicts (median measured/predicted samples/s "
            f"{ratio:.2f}; per trial {', '.join(f'{r:.2f}' for r in recent)}); times to "
            f"target measured now and at the start compare poorly")


class DriftWatch:
    """run_trials()'s on_trial callback: warns when the speed drifts (see the module)."""

    def __init__(self, profile: ProfileResult, emit: EventCallback) -> None:
        self.profile, self.emit = profile, emit
        self.warned: float | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        values = ratios(study.get_trials(deepcopy=False), self.profile)
        ratio = window_median(values)
        if ratio is not None and drifted(ratio, self.warned):
            self.warned = ratio
            self.emit(TuneEvent("stage", "warning",
                                drift_message(ratio, values[-DRIFT_WINDOW:])))
