"""Re-measure before recommending: one run's time varies +-30% on shared machines.

The best few configurations of the study are re-run from scratch with fresh seeds,
interleaved with the comparisons (reference recipe, largest batch + LR rule), and
the recommendation is the best *median*, not the study's luckiest draw.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, replace
from typing import Any

import optuna
import torch

from autobatch.config import Budget, RunConfig
from autobatch.events import EventCallback, TuneEvent
from autobatch.hyperparams import Hyperparams
from autobatch.search import Prior, powers_of_two, runner_for
from autobatch.workloads import Workload

# A run is censored at this multiple of its own study time (comparisons: the study's
# best), times the machine's slowdown since the study (+1 s); see run_cut().
CENSOR_FACTOR = 4
VERIFY_SEED = 10_000
# Time kept at the end of a --timeout for publishing and writing the result.
FINISH_RESERVE_S = 3.0
# A re-measurement shorter than this is not worth starting.
MIN_RUN_S = 0.5


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One configuration and its re-measured times (None: target not reached)."""

    name: str
    hparams: Hyperparams
    tuned: bool
    trial_number: int | None = None
    study_value: float | None = None
    runs: tuple[float | None, ...] = ()
    first_evals: int = 0  # runs that reached the target at their first evaluation

    @classmethod
    def from_trial(cls, trial: optuna.trial.FrozenTrial) -> Candidate:
        return cls(name=f"trial {trial.number}", hparams=Hyperparams.from_dict(trial.user_attrs),
                   tuned=True, trial_number=trial.number, study_value=trial.value)

    def with_run(self, seconds: float | None, first_eval: bool = False) -> Candidate:
        return replace(self, runs=(*self.runs, seconds),
                       first_evals=self.first_evals + first_eval)

    def median(self) -> float | None:
        """Median over runs, a run that missed the target counting as infinitely slow."""
        if not self.runs:
            return None
        value = statistics.median(math.inf if r is None else r for r in self.runs)
        return value if math.isfinite(value) else None

    def reached(self) -> int:
        """Runs that reached the target."""
        return sum(r is not None for r in self.runs)

    def reached_share(self) -> float:
        return self.reached() / len(self.runs) if self.runs else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.hparams.to_dict(), "tuned": self.tuned,
                "trial_number": self.trial_number, "study_value": self.study_value,
                "runs": list(self.runs), "median_s": self.median(),
                "reached": self.reached(), "first_evals": self.first_evals}


@dataclass(frozen=True, kw_only=True)
class VerifyPlan:
    """What to re-measure. finalists: how many of the study's best configurations (0:
    none, the study's best is recommended as measured); runs: fresh-seed runs of each;
    budget_s: the most training time of one run; compare: also the reference recipe
    and the largest batch with the sqrt rule; fixed_batch: the user's fixed batch size."""

    target: float
    finalists: int = 3
    runs: int = 3
    budget_s: float = 60.0
    compare: bool = True
    fixed_batch: int | None = None


def comparisons(workload: Workload, prior: Prior, plan: VerifyPlan) -> list[Candidate]:
    """The reference recipe, and the largest batch that fits with the LR scaled by the
    square-root rule from the LR range test's anchor."""
    out = []
    if workload.reference is not None:
        out.append(Candidate(name="reference recipe", hparams=workload.reference.hparams,
                             tuned=False))
    largest = max(powers_of_two(1, prior.probe.max_batch_size)) \
        if plan.fixed_batch is None else plan.fixed_batch
    if prior.lr_range is not None:
        lr = prior.seed_lr0() * math.sqrt(largest / prior.space.anchor_batch)
        out.append(Candidate(name="largest batch + sqrt rule", tuned=False,
                             hparams=Hyperparams(batch_size=largest, lr=lr, momentum=0.9)))
    return out


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
    runner = runner_for(workload, device)  # as the trials ran: CUDA in a subprocess
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
    for rep in range(plan.runs):
        for i, cand in enumerate(candidates):
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
