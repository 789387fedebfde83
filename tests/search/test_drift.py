"""Speed drift during the study: measured samples/s against the profile's prediction."""

import math

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

import autobatch.keys as keys
from autobatch.search.drift import (
    DRIFT_WINDOW,
    DriftWatch,
    drift_record,
    drifted,
    ratios,
    refit,
    refit_message,
    speed_drift,
    window_median,
)
from tests.doubles import ALPHA, BETA
from tests.measure.test_trust import profiler

PROFILE = profiler([None])()  # the fake device exactly: t(B) = ALPHA + BETA * B


def trial(number: int, batch: int, slowdown: float, steps: int = 100,
          state: TrialState = TrialState.COMPLETE, alpha: float = ALPHA):
    """A finished trial at `batch` whose steps took `slowdown` x the profiled time (with
    a fixed cost `alpha` per step)."""
    attrs = {"batch_size": batch, keys.STEPS: steps,
             keys.SAMPLES_PER_S: batch / ((alpha + BETA * batch) * slowdown)}
    made = create_trial(state=state, value=1.0 if state == TrialState.COMPLETE else None,
                        params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
                        user_attrs=attrs)
    made.number = number
    return made


def test_the_ratio_is_measured_over_predicted_and_short_or_failed_trials_are_left_out():
    found = ratios([trial(1, 64, 2.0), trial(0, 16, 1.0), trial(2, 32, 4.0, steps=19),
                    trial(3, 32, 4.0, state=TrialState.FAIL),
                    trial(4, 128, 0.5, state=TrialState.PRUNED)], PROFILE)
    assert found == pytest.approx([1.0, 0.5, 2.0])


def test_window_median_drifted_and_the_recorded_drift_are_exact():
    assert window_median([1.0] * 4) is None
    assert window_median([9.0, 1.0, 0.5, 0.4, 0.6, 0.7, 0.3]) == 0.5
    assert not drifted(1 / 1.49, None) and drifted(1 / 1.5, None) and drifted(1.5, None)
    # warned at 1/1.5: again only once it is 1.5x further (1/2.25)
    assert not drifted(0.5, 1 / 1.5) and drifted(1 / 2.25, 1 / 1.5)
    assert speed_drift([1.0] * 4) is None
    assert speed_drift([1.0, 1.0, 0.2, 0.2, 0.2, 0.5, 0.5, 0.5, 1, 1]) == {
        "median_ratio": 0.5, "trials": 10, "window": DRIFT_WINDOW, "worst_ratio": 0.2,
        "limit": 1.5}


def test_a_machine_that_slows_down_mid_study_warns_once_and_again_when_it_worsens():
    study = optuna.create_study()
    events = []
    watch = DriftWatch(PROFILE, events.append)
    # 6 trials at the profiled speed, then 3x slower, then 9x slower
    slowdowns = [1.0] * 6 + [3.0] * 6 + [9.0] * 6
    for number, slowdown in enumerate(slowdowns):
        done = trial(number, [16, 32, 64][number % 3], slowdown)
        study.add_trial(done)
        watch(study, study.trials[-1])
    warnings = [e.message for e in events if e.name == "warning"]
    assert len(warnings) == 2
    assert warnings[0] == (
        "the machine's speed drifted: the last 5 trials ran 3.0x slower than the "
        "profile predicts (median measured/predicted samples/s 0.33; per trial 1.00, 1.00, "
        "0.33, 0.33, 0.33); times to target measured now and at the start "
        "compare poorly")
    assert warnings[1].startswith("the machine's speed drifted: the last 5 trials ran "
                                  "9.0x slower")
    drift = speed_drift(ratios(study.trials, PROFILE))
    assert drift["median_ratio"] == pytest.approx(1 / 9) and drift["trials"] == 18
    assert math.isclose(drift["worst_ratio"], 1 / 9)


def test_the_trials_own_step_times_refit_t_of_b_and_a_wrong_profile_is_said():
    # the machine's fixed cost per step is 3x what the profile measured: B_sat 600, not 200
    trials = [trial(n, b, 1.0, alpha=3 * ALPHA) for n, b in enumerate([16, 64, 256, 32, 128])]
    found = refit(trials, PROFILE)
    assert found["alpha_s"] == pytest.approx(3 * ALPHA) and found["beta_s"] == pytest.approx(BETA)
    assert found["b_sat"] == pytest.approx(600) and found["profile_b_sat"] == pytest.approx(200)
    assert found["trials"] == 5 and found["error"] == pytest.approx(0, abs=1e-9)
    assert refit_message(found) == (
        "the trials' own step times give B_sat 600 where the profile gave 200 (t(B) "
        "refitted on 5 trials): the profile does not describe the trials' steps (a busy "
        "machine, or steps that cost more inside a trial), and the prior's batch range "
        "rests on it; if the machine was busy, profile again when it is quiet (--no-cache)")
    assert drift_record(trials, PROFILE)["refit"] == found
    # the profile's own machine: no warning; too few trials or too narrow a span: no refit
    assert refit_message(refit([trial(n, b, 1.0) for n, b in enumerate([16, 64, 256] * 2)],
                               PROFILE)) is None
    assert refit(trials[:4], PROFILE) is None
    assert refit([trial(n, b, 1.0) for n, b in enumerate([32, 64, 32, 64, 32])], PROFILE) is None


def test_the_watch_says_a_wrong_profile_once():
    study = optuna.create_study()
    events = []
    watch = DriftWatch(PROFILE, events.append)
    for number, batch in enumerate([16, 64, 256, 32, 128] * 2):
        study.add_trial(trial(number, batch, 1.0, alpha=3 * ALPHA))
        watch(study, study.trials[-1])
    warned = [e.message for e in events if "B_sat" in e.message]
    assert len(warned) == 1 and "B_sat 600 where the profile gave 200" in warned[0]
