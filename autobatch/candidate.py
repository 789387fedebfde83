"""A configuration re-measured on fresh seeds, and the choice among them.

A run that missed the target counts as infinitely slow: a configuration that sometimes
stalls short of the target costs a training run far more than a slightly slower median.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import Any

import optuna

from autobatch.hyperparams import Hyperparams

REFERENCE = "reference recipe"  # the name of the workload's own recipe among candidates

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
