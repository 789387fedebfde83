"""A real (small) study to report on, shared by the report and the dashboard tests.

The study is real: Optuna trials of autobatch.search.study.Objective on the tiny workload.
The prior is hand-made (a GPU-like profile and a probe with one OOM) so the tests do
not spend 15 s probing and profiling; verification runs are invented from the trials.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

import autobatch.keys as keys
from autobatch.candidate import Candidate
from autobatch.device import DeviceInfo
from autobatch.hyperparams import Hyperparams
from autobatch.measure.noise import NoiseEstimate
from autobatch.measure.probe_result import Attempt, ProbeResult
from autobatch.measure.throughput import ProfileResult, ProfileRow
from autobatch.result import StudyInfo, TuneResult
from autobatch.search.objective import Objective
from autobatch.search.prior import Prior
from autobatch.search.pruning import pruner
from autobatch.search.runners import InProcessRunner
from autobatch.search.seeds import seed_trials
from autobatch.search.space import SearchSpace
from autobatch.search.study import METRIC_NAME, sampler, summarize
from tests.conftest import tiny_workload

STUDY = "tiny-target0.95"
TARGET = 0.95
GIB = 1024**3


def fake_prior() -> Prior:
    """A plausible GPU prior: t(B) = 4 ms + 20 us x B, B_simple 40, OOM at 1024."""
    alpha, beta = 0.004, 2e-5
    rows = tuple(ProfileRow(batch_size=b, fits=True, iter_s=alpha + beta * b,
                            iter_s_min=0.95 * (alpha + beta * b),
                            iter_s_max=1.1 * (alpha + beta * b),
                            samples_per_s=b / (alpha + beta * b), steps_per_epoch=256 // b or 1,
                            epoch_s=256 / b * (alpha + beta * b), repeats=5, steps_per_repeat=20)
                 for b in (8, 16, 32, 64, 128, 256, 512))
    noise = NoiseEstimate(b_simple=40.0, low=22.0, high=85.0, level=0.9, draws=64, b_small=4,
                          b_big=64, population=256, g2=1e-5, trace_sigma=4e-4,
                          warmup_steps=200, seconds=1.0)
    profile = ProfileResult(workload="tiny", device="cuda:0 (test GPU)", train_size=256,
                            max_batch=512, rows=rows, alpha=alpha, beta=beta,
                            b_sat=alpha / beta, fit_error=0.03, knee=128, knee_gain=0.1,
                            eval_pass_s=0.001, noise=noise, seconds=4.2,
                            torch_version=torch.__version__, threads=2)
    fixed, per_sample = 1.0 * GIB, 8 * 1024**2
    attempts = tuple(Attempt(batch_size=b, outcome="fit", peak_bytes=int(fixed + per_sample * b),
                             train_steps=2, seconds=0.2) for b in (1, 64, 512)) + (
        Attempt(batch_size=1024, outcome="oom", peak_bytes=None, train_steps=1, seconds=0.1),)
    probe = ProbeResult(
        workload="tiny", fingerprint="0" * 16,
        device=DeviceInfo(type="cuda", index=0, name="Test GPU", total_bytes=8 * GIB,
                          free_bytes=8 * GIB),
        dtype="float32", max_batch_size=512, limited_by="memory", min_batch=1, max_batch=4096,
        headroom=0.1, memory_limit_bytes=None, usable_bytes=8 * GIB,
        budget_bytes=int(7.2 * GIB), peak_bytes=int(fixed + per_sample * 512),
        fixed_bytes=fixed, bytes_per_sample=per_sample, fit_r2=1.0, fit_max_rel_error=0.0,
        attempts=attempts, train_steps=7, seconds=0.7, isolation="subprocess",
        torch_version=torch.__version__, created_at="2026-01-01T00:00:00Z")
    space = SearchSpace(batch_sizes=(16, 32, 64, 128, 256), anchor_batch=64,
                        lr_range=(0.05, 3.0))
    return Prior(probe=probe, profile=profile, lr_range=None, b_star=89.0, space=space,
                 bucket_base=0.005)


def build_study(folder: Path, n_trials: int = 10) -> tuple[str, optuna.Study, TuneResult]:
    """A real study on the tiny workload with a fake prior, and a TuneResult for it."""
    url = f"sqlite:///{folder / 'study.db'}"
    study = optuna.create_study(storage=url, study_name=STUDY, direction="minimize",
                                sampler=sampler(0), pruner=pruner())
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        study.set_metric_names([METRIC_NAME])
    prior = fake_prior()
    study.set_user_attr(keys.PRIOR, prior.to_dict())
    study.set_user_attr(keys.CONTRACT, {"workload": "tiny", "target": TARGET})
    for params in seed_trials(prior):
        study.enqueue_trial(params)
    objective = Objective(runner=InProcessRunner(tiny_workload(), torch.device("cpu")),
                          space=prior.space, target=TARGET, trial_budget_s=1.0,
                          bucket_base=prior.bucket_base)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=n_trials)
    done = sorted((t for t in study.trials if t.user_attrs.get("target_reached")),
                  key=lambda t: t.value)
    assert done, "the tiny workload should reach the target"
    tuned = [Candidate.from_trial(t) for t in done[:2]]
    # Invented verification runs: the best 20% slower than in the study, the reference
    # recipe (batch 16, a small LR) three times slower still.
    tuned = [c.with_run(c.study_value * 1.2).with_run(c.study_value * 1.3) for c in tuned]
    ref = Candidate(name="reference recipe", hparams=Hyperparams(batch_size=16, lr=0.05),
                    tuned=False, runs=(done[0].value * 4, None, done[0].value * 3.5))
    result = TuneResult(
        workload="tiny", target=TARGET, device="cpu", best=tuned[0],
        candidates=(*tuned, ref), prior={"max_batch_size": 512},
        study=StudyInfo(name=STUDY, storage=url, trials=summarize(study)), tuning_seconds=9.0,
        train_size=256)
    return url, study, result
