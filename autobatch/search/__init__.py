"""The search: the space built from the measurements, the objective and its pruning on
the training-time axis, the trial runners, and the workers that share one study."""

from autobatch.search.objective import Objective, interrupt_reason, make_objective
from autobatch.search.prior import SEED_LR_FRACTION, Prior, measure_prior
from autobatch.search.pruning import BehindWinnersPruner, TimeBucketPruning, pruner
from autobatch.search.runners import (
    InProcessRunner,
    SubprocessRunner,
    TrialCrashed,
    TrialRunner,
    UserExit,
    runner_for,
)
from autobatch.search.seeds import seed_trials
from autobatch.search.settings import WorkerSettings, contract, default_study_name
from autobatch.search.space import SearchSpace, powers_of_two
from autobatch.search.study import (
    METRIC_NAME,
    MIN_IMPROVEMENT,
    censored_value,
    check_contract,
    converged,
    fail_running,
    reached_trials,
    sampler,
    summarize,
)
from autobatch.search.worker_processes import spawn_workers
from autobatch.search.workers import run_trials, work

__all__ = [
    "METRIC_NAME", "MIN_IMPROVEMENT", "SEED_LR_FRACTION", "BehindWinnersPruner",
    "InProcessRunner", "Objective", "Prior", "SearchSpace", "SubprocessRunner",
    "TimeBucketPruning", "TrialCrashed", "TrialRunner", "UserExit", "WorkerSettings",
    "censored_value", "check_contract", "contract", "converged", "default_study_name",
    "fail_running", "interrupt_reason", "make_objective", "measure_prior", "powers_of_two",
    "pruner", "reached_trials", "run_trials", "runner_for", "sampler", "seed_trials",
    "spawn_workers", "summarize", "work",
]
