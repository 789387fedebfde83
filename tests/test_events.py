"""A finished trial as the row and the progress line the CLI prints."""

from __future__ import annotations

from optuna.trial import TrialState, create_trial

import autobatch.keys as keys
from autobatch.events import trial_line, trial_row
from autobatch.hyperparams import Hyperparams
from autobatch.schedule import Schedule


def trial(number: int, state: TrialState, value: float | None = None, **attrs):
    made = create_trial(state=state, value=value, user_attrs=attrs)
    made.number = number
    return made


def test_trial_row_says_the_time_to_target_or_why_not():
    recipe = Hyperparams(batch_size=32, lr=0.1234).to_dict()
    done = trial(0, TrialState.COMPLETE, 1.23456, **recipe, **{keys.TARGET_REACHED: True})
    missed = trial(1, TrialState.COMPLETE, 9.0, **recipe,
                   **{keys.TARGET_REACHED: False, keys.BEST_METRIC: 0.8})
    pruned = trial(2, TrialState.PRUNED, **recipe, **{keys.PRUNE_REASON: "timeout"})
    failed = trial(3, TrialState.FAIL, **{keys.FAIL_REASON: "crashed"})
    assert trial_row(done) == ("0", "complete", "32", "0.123", "0.9", "1.235s")
    assert trial_row(missed)[-1] == "not reached (best 0.800)"
    assert trial_row(pruned)[-1] == "timeout"
    assert trial_row(failed) == ("3", "fail", "-", "-", "-", "crashed")
    assert trial_line(done) == "trial 0 complete  batch    32 lr     0.123 momentum    0.9 1.235s"
    cosine = Hyperparams(batch_size=32, lr=0.1234,
                         schedule=Schedule(name="cosine", warmup="1epochs", horizon="8epochs"))
    decayed = trial(4, TrialState.PRUNED, **cosine.to_dict(), **{keys.PRUNE_REASON: "timeout"})
    assert trial_line(decayed) == ("trial 4 pruned    batch    32 lr     0.123 momentum    0.9 "
                                   "[cosine, warmup 1epochs, horizon 8epochs] timeout")
