"""The facts the page and the dashboard note share, from hand-made trials and results."""

from __future__ import annotations

import pytest
from optuna.trial import FrozenTrial, TrialState, create_trial

import autobatch.keys as keys
from autobatch.hyperparams import Hyperparams
from autobatch.report.facts import best_per_batch, probe_facts, profile_facts, trial_rows
from autobatch.report.recommendation import (
    comparison,
    recommendation,
    recommended_trial,
    verdict_line,
)
from autobatch.result import StudyInfo, TuneResult
from autobatch.schedule import Schedule
from tests.conftest import candidate
from tests.report.studies import fake_prior


def trial(number: int, state: TrialState = TrialState.COMPLETE, value: float | None = None,
          recipe: Hyperparams | None = None, **attrs) -> FrozenTrial:
    """A finished trial with the attributes the objective writes: the recipe, then `attrs`."""
    made = create_trial(state=state, value=value,
                        user_attrs={**(recipe.to_dict() if recipe else {}), **attrs})
    made.number = number
    return made


def reached(number: int, seconds: float, batch: int, lr: float = 0.1) -> FrozenTrial:
    return trial(number, value=seconds, recipe=Hyperparams(batch_size=batch, lr=lr),
                 **{keys.TARGET_REACHED: True, keys.CURVE: [[seconds, 0.96]]})


def result(*candidates) -> dict:
    """The best.json document of a tune() whose best is the first candidate."""
    return TuneResult(workload="tiny", target=0.95, device="cpu", best=candidates[0],
                      candidates=candidates, prior={}, tuning_seconds=1.0,
                      study=StudyInfo(name="s", storage="sqlite:///s.db", trials={})).to_dict()


def test_best_per_batch_is_the_fastest_to_the_target_else_the_closest():
    slow, fast = reached(0, 5.0, 32), reached(1, 4.0, 32)
    missed = trial(2, value=10.0, recipe=Hyperparams(batch_size=64, lr=0.1),
                   **{keys.TARGET_REACHED: False, keys.BEST_METRIC: 0.8, keys.CURVE: [[1, 0.8]]})
    closer = trial(3, TrialState.PRUNED, recipe=Hyperparams(batch_size=64, lr=0.2),
                   **{keys.BEST_METRIC: 0.9, keys.CURVE: [[1, 0.9]]})
    no_curve = trial(4, TrialState.PRUNED, recipe=Hyperparams(batch_size=128, lr=0.1))
    no_recipe = trial(5, TrialState.FAIL, **{keys.FAIL_REASON: "crashed"})
    best = best_per_batch([no_recipe, slow, closer, no_curve, fast, missed])
    assert best == {32: fast, 64: closer} and list(best) == [32, 64]


def test_recommendation_is_the_verified_result_else_the_fastest_trial():
    data = result(candidate())
    trials = [reached(0, 5.0, 32), reached(1, 3.0, 64, lr=0.2),
              trial(2, TrialState.PRUNED, recipe=Hyperparams(batch_size=16, lr=0.1))]
    assert recommendation(data, trials) is data
    assert recommendation(None, trials[2:]) is None
    rec = recommendation(None, trials)
    assert (rec["batch_size"], rec["lr"], rec["momentum"]) == (64, 0.2, 0.9)
    assert rec["expected_time_to_target_s"] == 3.0 and recommended_trial(rec) == 1
    assert comparison(rec) == ("batch 64, LR 0.2, momentum 0.9: 3 s to the target (one study "
                               "trial, not re-measured); no reference recipe was measured", [])


def test_comparison_against_a_reference_that_reached_the_target():
    best = candidate(runs=(1.0, 2.0, None))
    ref = candidate("reference recipe", runs=(6.0, 8.0, 7.0), tuned=False, trial_number=None,
                    batch_size=16, lr=0.05)
    rec = result(best, ref)
    assert recommended_trial(rec) == 3
    # paired seeds: 6/1 and 8/2 (the third pair: the best missed), median 5x
    assert comparison(rec) == (
        "batch 256, LR 0.3, momentum 0.9: 2 s to the target (median of 3 fresh-seed runs, "
        "75% interval [1 s, not reached], trial 3's study run: 1.1 s); 5x as fast as the "
        "reference recipe on paired seeds (batch 16, LR 0.05: 7 s)",
        [["trial 3 (recommended)", "256", "0.3", "0.9", "constant", "2 s [1 s, not reached]",
          "2/3", "5x, won 2/3"],
         ["reference recipe", "16", "0.05", "0.9", "constant", "7 s [6, 8] s", "3/3",
          "reference"]])
    assert verdict_line(rec) == ("keep the reference recipe: not shown faster than the "
                                 "reference recipe: won 2, lost 1, tied 0 of 3 paired fresh "
                                 "seeds (sign test p = 0.5 > 0.125); keep your recipe")


def test_comparison_against_a_reference_that_never_reached_it():
    ref = candidate("reference recipe", runs=(None, None, None), tuned=False,
                    trial_number=None, batch_size=16, lr=0.05)
    never_run = candidate("largest batch + sqrt rule", runs=(), tuned=False,
                          trial_number=None, batch_size=512)
    rec = result(candidate(runs=(1.0, 2.0, 3.0)), ref, never_run)
    headline, rows = comparison(rec)
    assert headline.endswith("; the reference recipe (batch 16, LR 0.05) reached the target "
                             "in 0 of 3 runs")
    assert rows[0][-1] == "won 3/3"  # no pair where both reached: the seeds it won
    assert rows[1][5:] == ["not reached (most runs)", "0/3", "reference"]
    assert rows[2][5:] == ["-", "not re-measured", "-"]
    assert verdict_line(rec).startswith("use this recipe: faster than the reference recipe "
                                        "on 3 of 3 paired fresh seeds")


@pytest.mark.parametrize(("runs", "words"), [
    ((2.0,), "2 s to the target (one fresh-seed run, trial 3's study run: 1.1 s)"),
    ((2.0, 3.0), "2.5 s to the target (median of 2 fresh-seed runs, 50% interval [2, 3] s, "
                 "trial 3's study run: 1.1 s)"),
])
def test_the_headline_counts_the_runs_in_words(runs, words):
    headline, _ = comparison(result(candidate(runs=runs)))
    assert words in headline


def test_trial_rows_show_what_each_trial_measured_and_why_it_stopped():
    done = trial(0, value=1.23456, recipe=Hyperparams(batch_size=32, lr=0.1),
                 **{keys.TARGET_REACHED: True, keys.BEST_METRIC: 0.96, keys.STEPS: 120,
                    keys.SAMPLES_PER_S: 12345.6, keys.TRAIN_SECONDS: 1.2,
                    keys.STOP_REASON: "target"})
    censored = trial(1, value=7.5, recipe=Hyperparams(batch_size=64, lr=0.2, momentum=0.95),
                     **{keys.TARGET_REACHED: False})
    pruned = trial(2, TrialState.PRUNED, recipe=Hyperparams(batch_size=16, lr=0.3),
                   **{keys.PRUNE_REASON: "timeout"})
    failed = trial(3, TrialState.FAIL, **{keys.FAIL_REASON: "crashed"})
    assert trial_rows([done, censored, pruned, failed]) == [
        ["0", "complete", "32", "0.1", "0.9", "constant", "1.235 s", "0.9600", "120",
         "12,346", "1.2", "target", ""],
        ["1", "complete", "64", "0.2", "0.95", "constant", "not reached (7.5, censored)", "-",
         "-", "-", "-", "-", ""],
        ["2", "pruned", "16", "0.3", "0.9", "constant", "-", "-", "-", "-", "-", "-", "timeout"],
        ["3", "fail", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "crashed"],
    ]


def test_probe_and_profile_facts_read_the_prior():
    prior = fake_prior().to_dict()
    assert probe_facts(prior["probe"]) == [
        ("largest batch that fits", "512 (limited by memory)"),
        ("device", "Test GPU (cuda), subprocess"),
        ("peak memory at that batch", "5 GiB of a 7.2 GiB budget (10% headroom)"),
        ("memory model", "1 GiB + 8 MiB × batch, R² 1.000"),
        ("attempts", "4 in 0.7 s; did not fit: 1024"),
    ]
    assert profile_facts(prior) == [
        ("time per step t(B)", "4 ms + 20 µs × B (fit error 3%)"),
        ("B_sat = α/β", "200"),
        ("throughput knee", "128"),
        ("noise scale B_simple", "40 [22, 85] (90%)"),
        ("predicted best batch B*", "89"),
        ("search space", "batches 16, 32, 64, 128, 256; LR 0.05 .. 3 at batch 64"),
    ]


def test_a_recipe_in_words_names_the_optimizer_and_schedule_only_where_set():
    assert Hyperparams(batch_size=64, lr=0.123456, momentum=0.95).summary() == (
        "batch 64, LR 0.1235, momentum 0.95")
    cosine = Schedule(name="cosine", warmup="5%", horizon="10epochs")
    assert Hyperparams(batch_size=8, lr=0.01, optimizer="adam", schedule=cosine).summary() == (
        "batch 8, LR 0.01, momentum 0.9, adam, cosine, warmup 5%, horizon 10epochs schedule")
