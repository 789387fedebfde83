"""Verification: candidates re-measured on fresh seeds, and the recommendation."""

from autobatch.verify import recommendation, unreliable
from tests.conftest import candidate


def test_candidate_median_counts_misses_as_infinitely_slow():
    assert candidate(runs=(1.0, 2.0, None)).median() == 2.0
    assert candidate(runs=(1.0, None, None)).median() is None
    assert candidate(runs=()).median() is None
    assert candidate(runs=(1.0, None)).reached_share() == 0.5


def test_recommendation_is_the_best_median_among_reliable_tuned_candidates():
    fast_but_flaky = candidate(name="a", runs=(0.5, None))  # median: inf
    steady = candidate(name="b", runs=(1.0, 1.2, 1.1))
    slower = candidate(name="c", runs=(2.0, 2.0, 2.0))
    reference = candidate(name="ref", tuned=False, runs=(0.1, 0.1, 0.1))
    assert recommendation([fast_but_flaky, steady, slower, reference]) is steady
    # a better median that missed the target once loses to one that always reached it
    mostly = candidate(name="d", runs=(0.6, 0.7, None))
    assert recommendation([mostly, slower]) is slower
    assert recommendation([mostly, fast_but_flaky]) is mostly
    # nothing re-measured (verification skipped): the study's best, listed first
    assert recommendation([candidate(name="x", runs=()), reference]).name == "x"


def test_a_recommendation_that_mostly_missed_the_target_is_flagged():
    assert unreliable(candidate(runs=(1.0, 2.0, None))) is None  # reached 2 of 3
    assert unreliable(candidate(runs=())) is None  # not re-measured (--verify 0)
    assert "only 1 of its 3 re-runs" in unreliable(candidate(runs=(1.0, None, None)))
