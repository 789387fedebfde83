"""Whether the machine's speed drifted during the study: each finished trial's measured
samples/s against the profile's prediction at its batch; and t(B) refitted from them.

ratio = measured / predicted samples/s (below 1: slower than when profiled). The
median over the last DRIFT_WINDOW trials beyond DRIFT_LIMIT either way is a drift:
warned once, and again each time it grows DRIFT_LIMIT-fold further; best.json records
it (speed_drift). Trials of fewer than MIN_STEPS steps are left out: their first
steps at a new shape run 10-50x slower, so their samples/s says little about the
machine. Arithmetic in pure functions, tested exactly.

Each such trial also measured one step time at its batch (batch / samples/s), taken
while the study ran, so the profile's robust fit over those points is t(B) on the
machine as it is (refit). The profile is taken once, perhaps in a burst of load; when
the refit's B_sat is REFIT_LIMIT-fold away from it, the prior's batch range and
`--time modeled` rest on a wrong model, and the user is told once. `--time modeled`
keeps the profile's model for the whole study, so trial values stay comparable.
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
from autobatch.measure.step_fit import fit_step_time

DRIFT_WINDOW = 5
DRIFT_LIMIT = 1.5
MIN_STEPS = 20
# The trials' batches must span this factor before the refit can tell the fixed cost
# from the per-sample cost.
REFIT_SPAN = 4
REFIT_LIMIT = 2.0


def measured_step(trial: FrozenTrial) -> tuple[int, float] | None:
    """(batch, seconds per step) a finished trial of at least MIN_STEPS steps measured."""
    attrs = trial.user_attrs
    batch, measured = attrs.get("batch_size"), attrs.get(keys.SAMPLES_PER_S)
    if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED) or not batch \
            or not measured or (attrs.get(keys.STEPS) or 0) < MIN_STEPS:
        return None
    return batch, batch / measured


def speed_ratio(trial: FrozenTrial, profile: ProfileResult) -> float | None:
    """The trial's measured samples/s over the profile's prediction at its batch."""
    step = measured_step(trial)
    predicted = (profile.predict_iter_s(step[0], trial.user_attrs.get("grad_accum", 1))
                 if step else None)
    return predicted / step[1] if predicted else None


def refit(trials: Sequence[FrozenTrial], profile: ProfileResult) -> dict[str, Any] | None:
    """t(B) = alpha + beta * B fitted to the trials' own step times, beside the
    profile's B_sat; None with fewer than DRIFT_WINDOW trials or too narrow a span."""
    points = [p for p in map(measured_step, trials) if p is not None]
    batches = [b for b, _ in points]
    if len(points) < DRIFT_WINDOW or max(batches) < REFIT_SPAN * min(batches):
        return None
    fit = fit_step_time(batches, [t for _, t in points])
    return {"alpha_s": fit.alpha, "beta_s": fit.beta, "b_sat": fit.b_sat,
            "error": fit.error, "trials": len(points), "profile_b_sat": profile.b_sat}


def refit_message(found: dict[str, Any]) -> str | None:
    """A warning when the refit's B_sat is REFIT_LIMIT-fold away from the profile's."""
    ours, theirs = found["b_sat"], found["profile_b_sat"]
    if ours and theirs and max(ours / theirs, theirs / ours) < REFIT_LIMIT:
        return None
    if not ours and not theirs:
        return None
    shown = [f"{v:.0f}" if v else "unbounded" for v in (ours, theirs)]
    return (f"the trials' own step times give B_sat {shown[0]} where the profile gave "
            f"{shown[1]} (t(B) refitted on {found['trials']} trials): the profile does not "
            "describe the trials' steps (a busy machine, or steps that cost more inside a "
            "trial), and the prior's batch range rests on it; if the machine was busy, "
            "profile again when it is quiet (--no-cache)")


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


def drift_record(trials: Sequence[FrozenTrial],
                 profile: ProfileResult) -> dict[str, Any] | None:
    """best.json's speed_drift, with the refit of t(B) (None: too few trials)."""
    drift = speed_drift(ratios(trials, profile))
    return drift and {**drift, "refit": refit(trials, profile)}


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
        self.refit_warned = False

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.check(study)

    def check(self, study: optuna.Study) -> None:
        """Look at the study's finished trials (in any worker's hands) and warn."""
        trials = study.get_trials(deepcopy=False)
        values = ratios(trials, self.profile)
        ratio = window_median(values)
        if ratio is not None and drifted(ratio, self.warned):
            self.warned = ratio
            self.emit(TuneEvent("stage", "warning",
                                drift_message(ratio, values[-DRIFT_WINDOW:])))
        found = None if self.refit_warned else refit(trials, self.profile)
        if found and (message := refit_message(found)):
            self.refit_warned = True
            self.emit(TuneEvent("stage", "warning", message))
