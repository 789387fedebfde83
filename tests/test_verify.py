"""Verification: candidates re-measured on fresh seeds, and the recommendation."""

import time
from dataclasses import dataclass

import optuna
import pytest
import torch
from optuna.trial import FrozenTrial

import autobatch.keys as keys
from autobatch.candidate import recommendation, unreliable
from autobatch.config import RunConfig
from autobatch.events import TuneEvent
from autobatch.train import EvalPoint, RunResult
from autobatch.verify import (
    FINISH_RESERVE_S,
    VERIFY_SEED,
    VerifyPlan,
    verification_seconds,
    verify,
)
from tests.conftest import candidate, tiny_workload, unreachable_workload

CPU = torch.device("cpu")


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


def reached(*trials: tuple[float, int]) -> list[FrozenTrial]:
    """Study trials that reached the target: (time to target, batch size) each."""
    study = optuna.create_study()
    for value, batch_size in trials:
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs={
            "batch_size": batch_size, "lr": 0.1, "momentum": 0.9, "optimizer": None,
            keys.TARGET_REACHED: True}))
    return study.trials


def test_verify_reruns_the_best_finalists_interleaved_and_stops_at_the_deadline():
    events: list[TuneEvent] = []
    trials = reached((0.2, 16), (0.1, 32), (0.3, 64))
    plan = VerifyPlan(target=0.95, finalists=2, runs=2, max_runs=2, budget_s=5.0,
                      compare=False)
    done = verify(tiny_workload(), plan, None, trials, CPU, time.time() + 600, events.append)
    # the two best, best first, each re-run twice
    assert [(c.name, c.hparams.batch_size, len(c.runs)) for c in done] == [
        ("trial 1", 32, 2), ("trial 0", 16, 2)]
    assert all(r is not None for c in done for r in c.runs)
    assert [e.name for e in events] == ["trial 1", "trial 0", "trial 1", "trial 0"]
    # a deadline already (nearly) reached: nothing is run, and the user is told
    events.clear()
    cut = verify(tiny_workload(), plan, None, trials, CPU, time.time() + FINISH_RESERVE_S,
                 events.append)
    assert [len(c.runs) for c in cut] == [0, 0]
    assert [(e.name, e.message) for e in events] == [
        ("deadline", "timeout reached: verification cut short")]


def test_a_run_cut_by_the_deadline_is_not_counted_as_a_miss():
    events: list[TuneEvent] = []
    plan = VerifyPlan(target=0.95, finalists=1, runs=3, budget_s=60.0, compare=False)
    # the target is never reached, and the deadline leaves ~1 s of a 60 s budget
    done = verify(unreachable_workload(), plan, None, reached((0.5, 16)), CPU,
                  time.time() + FINISH_RESERVE_S + 1.0, events.append)
    assert done[0].runs == ()
    assert events[-1].message == "timeout reached: verification cut short"


@dataclass
class SeededRunner:
    """A runner without training: the time to target of each batch size on each fresh
    seed (run i: seed VERIFY_SEED + i) comes from `times`; None misses the target."""

    times: dict[int, list[float | None]]
    device: torch.device = CPU

    def run(self, config: RunConfig, on_eval) -> RunResult:
        seconds = self.times[config.batch_size][config.seed - VERIFY_SEED]
        point = EvalPoint(train_seconds=seconds or config.budget.seconds, steps=1,
                          samples=config.batch_size, epochs=0.0, train_loss=0.5,
                          metric=1.0 if seconds else 0.0, eval_seconds=0.0)
        return RunResult(
            workload="seeded", device="none", config=config, target_reached=bool(seconds),
            time_to_target_s=seconds, steps_to_target=2 if seconds else None,
            samples_to_target=None, steps=2, samples=2, epochs=0.0,
            train_seconds=point.train_seconds, eval_seconds=0.0, samples_per_s=0.0,
            best_metric=point.metric, final_metric=point.metric,
            stop_reason="target" if seconds else "budget", trace=(point,),
            peak_memory_bytes=0)


def race(monkeypatch, times: dict[int, list[float | None]], runs: int = 3,
         max_runs: int | None = None) -> list:
    monkeypatch.setattr("autobatch.verify.runner_for",
                        lambda workload, device, nproc=1: SeededRunner(times))
    plan = VerifyPlan(target=0.9, finalists=3, runs=runs, max_runs=max_runs, budget_s=60.0,
                      compare=False)
    trials = reached(*((1.0 + i / 10, b) for i, b in enumerate(times)))
    return verify(tiny_workload(), plan, None, trials, CPU, time.time() + 600, lambda e: None)


def test_the_race_drops_a_clear_loser_after_the_minimum_runs(monkeypatch):
    # 16 beats 32 and 64 on every seed: three rounds separate them, and the race ends
    # (by default it may run 3 x 3 rounds)
    done = race(monkeypatch, {16: [1.0] * 9, 32: [2.0] * 9, 64: [None] * 9})
    assert [len(c.runs) for c in done] == [3, 3, 3]
    assert recommendation(done).hparams.batch_size == 16


def test_a_close_call_runs_more_rounds_until_a_pair_test_separates_it(monkeypatch):
    # 16 and 32 trade wins on the first seeds: 64 (always last) leaves after round 3,
    # while 16 and 32 race on until 16 wins 5 of 6 pairs (p = 7/64 <= 1/8)
    close = {16: [1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
             32: [1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5],
             64: [3.0] * 9}
    done = race(monkeypatch, close)
    by_batch = {c.hparams.batch_size: len(c.runs) for c in done}
    assert by_batch[64] == 3
    assert by_batch[16] == by_batch[32] == 6
    assert recommendation(done).hparams.batch_size == 16


def test_a_race_that_never_separates_ends_at_its_most_rounds(monkeypatch):
    even = {16: [1.0, 2.0] * 5, 32: [2.0, 1.0] * 5}
    done = race(monkeypatch, even, max_runs=6)
    assert [len(c.runs) for c in done] == [6, 6]
    # without a race (max_runs = runs) each candidate runs exactly `runs` times
    assert [len(c.runs) for c in race(monkeypatch, even, max_runs=3)] == [3, 3]


def test_the_time_kept_for_verification_follows_the_study_times():
    plan = VerifyPlan(target=0.9, finalists=2, runs=3, compare=True)
    # 3 rounds of: two finalists at 2x their study times, two comparisons at their cut
    assert verification_seconds([1.0, 1.5, 9.0], plan) == pytest.approx(
        3 * (2.0 * (1.0 + 1.5) + 2 * (4 * 1.0 + 1.0)))
    assert verification_seconds([], plan) == 0.0
    assert verification_seconds([1.0], VerifyPlan(target=0.9, finalists=0)) == 0.0
