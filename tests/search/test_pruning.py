"""Pruning on the training-time axis: buckets, plateaus, the winners' median."""


import optuna
import pytest
import torch

from autobatch.search.pruning import (
    BehindWinnersPruner,
    bucket_reports,
    bucket_seconds,
    bucket_step,
    plateaued,
)

CPU = torch.device("cpu")


def test_bucket_seconds_are_geometric_and_steps_are_milliseconds():
    assert [round(bucket_seconds(k, 0.1), 4) for k in range(4)] == [0.1, 0.125, 0.1562, 0.1953]
    assert [bucket_step(k, 0.1) for k in range(4)] == [100, 125, 156, 195]


def test_bucket_reports_close_buckets_with_the_best_metric_measured_before():
    # no metric known yet: buckets before the first evaluation are closed unreported
    assert bucket_reports(0, None, 0.13, 0.1) == ([], 2)
    # metric 0.6 known; an evaluation at 0.2 s closes buckets 2 (0.156 s) and 3 (0.195 s)
    reports, closed = bucket_reports(2, 0.6, 0.2, 0.1)
    assert closed == 4
    assert reports == [(2, 0.6), (3, 0.6)]
    # nothing due before the next bucket closes
    assert bucket_reports(4, 0.7, 0.24, 0.1) == ([], 4)


@pytest.mark.parametrize(("history", "expected"), [
    ([(1, 0.5), (2, 0.6), (4, 0.7), (8, 0.8)], False),  # still improving
    ([(1, 0.5), (2, 0.8), (4, 0.79), (8, 0.8)], True),   # nothing new since t=2 <= 8/2
    ([(1, 0.5), (2, 0.8), (4, 0.79), (5, 0.81)], False),  # improved after 5/2
    ([(0.1, 0.5), (0.3, 0.5)], False),                   # too early to judge
])
def test_plateaued(history, expected):
    assert plateaued(history, min_seconds=1.0) is expected


def test_a_run_still_in_its_initial_phase_is_no_plateau():
    flat = [(1, 0.1), (2, 0.1), (4, 0.105), (8, 0.1)]  # near chance, no rise yet
    assert not plateaued(flat, min_seconds=1.0, initial_s=10.0)  # 8 s < 25% of 40 s
    assert plateaued(flat, min_seconds=1.0, initial_s=8.0)  # long enough to judge
    # once it rose above its first evaluation, a stall counts at once
    rose = [(1, 0.1), (2, 0.5), (4, 0.5), (8, 0.5)]
    assert plateaued(rose, min_seconds=1.0, initial_s=100.0)


def test_pruner_cuts_only_trials_clearly_behind_the_winners_at_equal_seconds():
    # Trials report the censored value budget x (1 + target - metric), target 0.9; the
    # winners ran under a 10 s budget, the later trials under 20 s (a resumed study):
    # the pruner compares their errors all the same.
    study = optuna.create_study(pruner=BehindWinnersPruner(margin=0.1))

    def trial(budget: float, error: float, step: int = 100) -> optuna.Trial:
        made = study.ask()
        made.set_user_attr("trial_budget_s", budget)
        made.report(budget * (0.9 + error), step=step)
        return made

    assert not trial(10.0, 0.5).should_prune()  # no completed trial to compare with yet
    for error in (0.2, 0.3, 0.4):  # three winners: median error 0.3 at 100 ms
        winner = trial(10.0, error)
        winner.set_user_attr("target_reached", True)
        study.tell(winner, 1.0)
    censored = trial(10.0, 0.9)  # ran out of budget short of the target: not a bar to clear
    study.tell(censored, 60.0)
    close, behind = trial(20.0, 0.39), trial(20.0, 0.41)
    elsewhere = trial(20.0, 0.9, step=125)  # no winner reported at this bucket
    assert not close.should_prune()
    assert behind.should_prune()
    assert not elsewhere.should_prune()


