"""The verdict's statistics: exact arithmetic on paired fresh-seed runs."""

import pytest

from autobatch.verdict import ALPHA, binomial_tail, judge, median_interval, paired
from autobatch.verify import run_cut
from tests.conftest import candidate


def ref(runs):
    return candidate(name="reference recipe", tuned=False, trial_number=None, runs=runs)


def test_binomial_tail_is_exact():
    assert binomial_tail(3, 3) == 1 / 8 == ALPHA
    assert binomial_tail(3, 2) == 4 / 8
    assert binomial_tail(5, 4) == 6 / 32
    assert binomial_tail(0, 0) == 1.0


def test_paired_counts_a_missed_run_as_slower_and_two_misses_as_a_tie():
    result = paired(candidate(runs=(1.0, 2.0, None, None)), ref((2.0, None, 1.0, None)))
    assert (result.wins, result.losses, result.ties) == (2, 1, 1)
    assert result.p_value == binomial_tail(3, 2)
    assert result.median_ratio == 2.0  # only the pair where both reached has a ratio


def test_the_median_interval_widens_to_the_extremes_with_few_runs():
    assert median_interval((2.0, 1.0, 3.0)) == {"low": 1.0, "high": 3.0, "coverage": 0.75}
    # 9 runs: the 2nd and 8th smallest cover the median with 1 - 2 * 10/512
    nine = median_interval(tuple(float(i) for i in range(1, 10)))
    assert (nine["low"], nine["high"]) == (2.0, 8.0)
    assert nine["coverage"] == pytest.approx(1 - 2 * 10 / 512)
    assert median_interval((1.0, None, None))["high"] is None


def test_the_verdict_keeps_the_reference_unless_the_recommendation_wins_every_pair():
    best = candidate(runs=(1.0, 1.1, 0.9))
    runner_up = candidate(name="trial 5", runs=(1.2, 1.0, 1.3))
    clear = judge([best, runner_up, ref((2.0, 2.1, 1.9))], best)
    assert clear.verdict == "recommendation" and clear.vs_reference.p_value == ALPHA
    assert (clear.vs_runner_up.against, clear.vs_runner_up.wins) == ("trial 5", 2)
    close = judge([best, ref((2.0, 1.0, 1.9))], best)
    assert close.verdict == "keep_reference" and "keep your recipe" in close.reason
    assert judge([best], best).verdict == "recommendation"  # nothing to compare with
    # two wins of two: too few pairs for any verdict but "not shown", and it says why
    cut = judge([candidate(runs=(1.0, 1.1)), ref((2.0, 2.1))], candidate(runs=(1.0, 1.1)))
    assert cut.verdict == "keep_reference"
    assert cut.reason.startswith("too few paired fresh seeds to tell: won 2, lost 0, tied 0")
    assert "raise --timeout" in cut.reason


def test_a_tie_at_the_first_evaluation_is_said():
    best = candidate(runs=(0.02, 0.02))
    floor = [c.__class__(**{**c.__dict__, "first_evals": 2}) for c in (best, ref((0.02, 0.02)))]
    verdict = judge(floor, floor[0])
    assert verdict.floor_tie and "too easy" in verdict.reason
    assert verdict.verdict == "keep_reference"


def test_the_cut_follows_the_machine_and_each_candidates_own_times():
    best = candidate(runs=())  # study value 1.1
    assert run_cut(best, [], 1.0, 60.0) == pytest.approx(4 * 1.1 + 1)
    # the machine runs 3x slower than during the study: the cut stretches with it
    assert run_cut(best, [3.0, 2.0, 4.0], 1.0, 60.0) == pytest.approx(4 * 1.1 * 3 + 1)
    reference = ref((20.0,))
    assert run_cut(reference, [], 1.0, 60.0) == 40.0  # twice its own slowest run
    assert run_cut(reference, [20.0], 1.0, 60.0) == 60.0  # never past the trial budget
