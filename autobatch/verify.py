"""Re-measure before recommending: one run's time varies +-30% on shared machines.

The best few configurations of the study are re-run from scratch with fresh seeds,
interleaved with the comparisons (reference recipe, largest batch + LR rule), and
the recommendation is the best *median*, not the study's luckiest draw.

The re-runs are a race: round i runs every candidate still in it on seed
VERIFY_SEED + i. After the first `runs` rounds, a candidate leaves the race once a
paired sign test separates it from the leader (either way); the race ends when only the
leader is left or after `max_runs` rounds. Clear calls cost `runs` rounds, close ones
up to `max_runs`.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import optuna
import torch

from autobatch.candidate import REFERENCE, Candidate
from autobatch.config import Budget, RunConfig
from autobatch.events import EventCallback, TuneEvent
from autobatch.hyperparams import Hyperparams
from autobatch.search import Prior, powers_of_two, runner_for
from autobatch.verdict import separated
from autobatch.workloads import Workload

# A run is censored at this multiple of its own study time (comparisons: the study's
# best), times the machine's slowdown since the study (+1 s); see run_cut().
CENSOR_FACTOR = 4
VERIFY_SEED = 10_000
# The race runs close calls up to this multiple of its minimum runs.
RACE_FACTOR = 3
# A fresh-seed re-run's wall time over its study time (evaluations, set-up, another
# seed): about 2 measured on mnist1d-cnn.
RERUN_FACTOR = 2.0
# Time kept at the end of a --timeout for publishing and writing the result.
FINISH_RESERVE_S = 3.0
# A re-measurement shorter than this is not worth starting.
MIN_RUN_S = 0.5


@dataclass(frozen=True, kw_only=True)
class VerifyPlan:
    """What to re-measure. finalists: how many of the study's best configurations (0:
    none, the study's best is recommended as measured); runs: fresh-seed runs of each
    before the race may drop one; max_runs: the most rounds (None: RACE_FACTOR x runs);
    budget_s: the most training time of one run; compare: also the reference recipe
    and the largest batch with the sqrt rule; fixed_batch: the user's fixed batch size."""

    target: float
    finalists: int = 3
    runs: int = 3
    max_runs: int | None = None
    budget_s: float = 60.0
    compare: bool = True
    fixed_batch: int | None = None
    nproc_per_trial: int = 1


def comparisons(workload: Workload, prior: Prior, plan: VerifyPlan) -> list[Candidate]:
    """The reference recipe, and the largest batch that fits with the LR scaled by the
    square-root rule from the LR range test's anchor."""
    out = []
    if workload.reference is not None:
        out.append(Candidate(name=REFERENCE, hparams=workload.reference.hparams,
                             tuned=False))
    # what fits on the device at once, in the study's precision (and accumulation)
    largest = max(powers_of_two(1, prior.probe.max_batch_size)) * prior.space.grad_accum \
        if plan.fixed_batch is None else plan.fixed_batch
    if prior.lr_range is not None:
        lr = prior.seed_lr0() * math.sqrt(largest / prior.space.anchor_batch)
        out.append(Candidate(name="largest batch + sqrt rule", tuned=False,
                             hparams=Hyperparams(batch_size=largest, lr=lr, momentum=0.9,
                                                 **prior.space.numerics(largest))))
    return out


def verification_seconds(study_values: list[float], plan: VerifyPlan) -> float:
    """About how long the race's first `plan.runs` rounds take, from the study's best
    times so far (ascending): each finalist RERUN_FACTOR x its study time, each
    comparison its cut (CENSOR_FACTOR x the best + 1 s, at most)."""
    if not study_values or plan.finalists == 0:
        return 0.0
    finalists = study_values[:plan.finalists]
    comparisons = 2 if plan.compare else 0
    return plan.runs * (RERUN_FACTOR * sum(finalists)
                        + comparisons * (CENSOR_FACTOR * finalists[0] + 1.0))


def run_cut(cand: Candidate, slowdowns: list[float], best_study: float,
            budget: float) -> float:
    """Where a re-measurement of `cand` is censored: CENSOR_FACTOR x its own study time
    (a comparison's: the study's best) x the machine's slowdown since the study (the
    median of the tuned runs' time / study time so far; at least 1) + 1 s, and at
    least twice its own slowest run that reached the target; at most the trial budget.
    A loaded machine then stretches the cut instead of ending whole rounds short."""
    slow = max(1.0, statistics.median(slowdowns)) if slowdowns else 1.0
    own = cand.study_value if cand.tuned and cand.study_value else best_study
    reached = [r for r in cand.runs if r is not None]
    return min(budget, max(CENSOR_FACTOR * own * slow + 1.0, 2 * max(reached, default=0.0)))


def verify(workload: Workload, plan: VerifyPlan, prior: Prior,
           reached: list[optuna.trial.FrozenTrial], device: torch.device,
           deadline: float, emit: EventCallback) -> list[Candidate]:
    """Re-measure the best few configurations and the comparisons, interleaved."""
    # as the trials ran: CUDA in a subprocess, data-parallel in as many ranks
    runner = runner_for(workload, device, plan.nproc_per_trial)
    ranked = sorted(reached, key=lambda t: t.value)
    candidates: list[Candidate] = []
    for trial in ranked:
        cand = Candidate.from_trial(trial)
        if all(cand.hparams.key() != c.hparams.key() for c in candidates):
            candidates.append(cand)
        if len(candidates) >= max(plan.finalists, 1):
            break
    if plan.compare:
        candidates += comparisons(workload, prior, plan)
    if plan.finalists == 0:
        return candidates
    slowdowns: list[float] = []  # tuned runs' time (or cut) / their study time
    racing = set(range(len(candidates)))  # indices still in the race
    for rep in range(max(plan.runs, plan.max_runs or RACE_FACTOR * plan.runs)):
        for i in sorted(racing):
            cand = candidates[i]
            # enough to measure the usual recipes, without waiting for hopeless ones
            budget = run_cut(cand, slowdowns, ranked[0].value, plan.budget_s)
            time_left = deadline - FINISH_RESERVE_S - time.time()
            if time_left < MIN_RUN_S:
                emit(TuneEvent("verify", "deadline", "timeout reached: verification cut short"))
                return candidates
            run_config = RunConfig.of(cand.hparams, target=plan.target,
                                      budget=Budget(seconds=min(budget, time_left)),
                                      seed=VERIFY_SEED + rep)
            result = runner.run(run_config, lambda point: False)
            if not result.target_reached and result.stop_reason == "budget" \
                    and time_left < budget:
                emit(TuneEvent("verify", "deadline", "timeout reached: verification cut short"))
                return candidates  # cut by the deadline, not a measurement
            first = bool(result.target_reached and result.trace
                         and result.trace[0].steps == result.steps_to_target)
            candidates[i] = cand = cand.with_run(result.time_to_target_s, first)
            if cand.tuned and cand.study_value and (result.target_reached
                                                    or result.stop_reason == "budget"):
                slowdowns.append((result.time_to_target_s or budget) / cand.study_value)
            emit(TuneEvent("verify", cand.name, f"run {rep + 1}: " + (
                f"{result.time_to_target_s:.3f}s" if result.target_reached
                else f"not reached ({result.stop_reason})")))
        if rep + 1 >= plan.runs:
            out = separated([candidates[i] for i in sorted(racing)])
            racing -= {i for i in racing if any(c is candidates[i] for c in out)}
            if len(racing) <= 1:
                break
    return candidates
