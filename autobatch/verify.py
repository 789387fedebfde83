"""Re-measure before recommending: one run's time varies +-30% on shared machines.

The best few configurations of the study are re-run from scratch with fresh seeds,
interleaved with the comparisons (reference recipe, largest batch + LR rule), and
the recommendation is the best *median*, not the study's luckiest draw.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import optuna
import torch

from autobatch.config import Budget, RunConfig
from autobatch.events import EventCallback, TuneEvent
from autobatch.prior import Prior, comparisons
from autobatch.result import Candidate
from autobatch.train import run
from autobatch.workload import Workload

if TYPE_CHECKING:
    from autobatch.tuner import TuneConfig

# Comparisons are censored at this multiple of the study's best time (+1 s).
CENSOR_FACTOR = 4
VERIFY_SEED = 10_000
# Time kept at the end of a --timeout for publishing and writing the result.
FINISH_RESERVE_S = 3.0
# A re-measurement shorter than this is not worth starting.
MIN_RUN_S = 0.5


def verify(workload: Workload, config: TuneConfig, prior: Prior,
           reached: list[optuna.trial.FrozenTrial], device: torch.device,
           deadline: float, emit: EventCallback) -> list[Candidate]:
    """Re-measure the best few configurations and the comparisons, interleaved."""
    ranked = sorted(reached, key=lambda t: t.value)
    candidates: list[Candidate] = []
    for trial in ranked:
        cand = Candidate.from_trial(trial, config.optimizer)
        if all(cand.key() != c.key() for c in candidates):
            candidates.append(cand)
        if len(candidates) >= max(config.verify, 1):
            break
    if config.compare:
        candidates += comparisons(workload, prior, config)
    if config.verify == 0:
        return candidates
    # enough to measure the usual recipes, without waiting for hopeless ones
    budget = min(config.trial_budget, CENSOR_FACTOR * ranked[0].value + 1.0)
    for rep in range(config.verify_runs):
        for i, cand in enumerate(candidates):
            time_left = deadline - FINISH_RESERVE_S - time.time()
            if time_left < MIN_RUN_S:
                emit(TuneEvent("verify", "deadline", "timeout reached: verification cut short"))
                return candidates
            run_config = RunConfig(batch_size=cand.batch_size, lr=cand.lr,
                                   momentum=cand.momentum, target=config.target,
                                   budget=Budget(seconds=min(budget, time_left)),
                                   seed=VERIFY_SEED + rep, optimizer=cand.optimizer)
            result = run(workload, run_config, device=device)
            if not result.target_reached and result.stop_reason == "budget" \
                    and time_left < budget:
                emit(TuneEvent("verify", "deadline", "timeout reached: verification cut short"))
                return candidates  # cut by the deadline, not a measurement
            candidates[i] = cand = cand.with_run(result.time_to_target_s)
            emit(TuneEvent("verify", cand.name, f"run {rep + 1}: " + (
                f"{result.time_to_target_s:.3f}s" if result.target_reached
                else f"not reached ({result.stop_reason})")))
    return candidates


def recommendation(candidates: list[Candidate]) -> Candidate:
    """The tuned candidate that reached the target in the largest share of its runs,
    then with the best median time, among those that mostly reached it (the study's
    best when verification was skipped). A configuration that sometimes stalls short
    of the target costs a training run far more than a slightly slower median."""
    tuned = [c for c in candidates if c.tuned]
    measured = [c for c in tuned if c.median() is not None]  # reached in most runs
    if not measured:
        return tuned[0]
    return min(measured, key=lambda c: (-c.reached_share(), c.median()))


def unreliable(best: Candidate) -> str | None:
    """A warning when the recommendation missed the target in most of its re-runs."""
    if not best.runs or best.median() is not None:
        return None
    return (f"the recommendation reached the target in only {best.reached()} of its "
            f"{len(best.runs)} re-runs: no tuned configuration was reliable; raise "
            "--trial-budget or lower --target")
