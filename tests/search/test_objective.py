"""The objective: time to target, censored misses, prune reasons, interrupts."""

import math
from dataclasses import replace

import optuna
import pytest
import torch
import torch.nn.functional as F
from optuna.trial import TrialState
from torch import nn

import autobatch.keys as keys
from autobatch.search.extrapolate import CurveFit
from autobatch.search.objective import Objective, censored_value, modeled_seconds
from autobatch.search.pruning import bucket_step
from autobatch.search.runners import InProcessRunner
from autobatch.search.space import SearchSpace
from autobatch.search.workers import KEPT_FOR_VERIFICATION, once_reached, run_trials
from autobatch.storage import open_storage
from autobatch.train import Segment
from tests.conftest import tiny_workload, unreachable_workload
from tests.doubles import ScriptedRunner

CPU = torch.device("cpu")


def test_censored_value_orders_by_shortfall_and_exceeds_the_budget():
    assert censored_value(10.0, 0.9, 0.8) == pytest.approx(11.0)
    assert censored_value(10.0, 0.9, 0.5) == pytest.approx(14.0)
    assert censored_value(10.0, 0.9, None) == pytest.approx(19.0)
    assert censored_value(10.0, 0.9, 0.95) == 10.0


def test_a_trial_that_misses_the_target_completes_with_the_censored_value():
    workload = unreachable_workload()
    study = optuna.create_study()
    # a budget shorter than the plateau rule's wait: the trial runs out of budget
    study.optimize(objective(workload, trial_budget_s=0.05, bucket_base=0.01), n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE
    assert trial.user_attrs["target_reached"] is False
    assert trial.user_attrs["stop_reason"] == "budget"
    assert trial.value == pytest.approx(
        censored_value(0.05, 0.95, trial.user_attrs["best_metric"]))
    assert trial.value > 0.05


def test_modeled_seconds_uses_the_step_model():
    assert modeled_seconds(100, 256, 0.003, 1e-5) == pytest.approx(100 * (0.003 + 0.00256))


def objective(workload=None, **overrides) -> Objective:
    fields = dict(runner=InProcessRunner(workload or tiny_workload(), CPU),
                  space=SearchSpace(batch_sizes=(16, 32), anchor_batch=32, lr_range=(0.05, 0.5)),
                  target=0.95, trial_budget_s=10.0, bucket_base=0.01)
    fields.update(overrides)
    return Objective(**fields)


def test_objective_records_every_figure_and_returns_time_to_target():
    study = optuna.create_study()
    study.optimize(objective(), n_trials=3)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert done, [t.user_attrs for t in study.trials]
    trial = done[0]
    for key in ("Recipe", "batch_size", "lr", "momentum", "trial_budget_s", "target_reached",
                "stop_reason", "steps",
                "samples", "epochs", "samples_per_s", "eval_overhead_s", "best_metric",
                "train_seconds", "measured_time_s", "curve", "peak_memory_bytes"):
        assert key in trial.user_attrs, key
    assert trial.value == trial.user_attrs["measured_time_s"]
    assert trial.user_attrs["best_metric"] >= 0.95
    # the recipe the search coordinates (lr0, lr_scaling) made, readable beside them
    recipe = trial.user_attrs["Recipe"]
    assert recipe.startswith(f"batch {trial.user_attrs['batch_size']}, LR ")
    assert f"LR {trial.user_attrs['lr']:.4g}, momentum {trial.user_attrs['momentum']:.3g}" \
        in recipe


def test_a_pruned_trial_scores_on_the_objective_axis_above_every_success():
    # Optuna stores a pruned trial's last intermediate value as its value, and the
    # dashboard plots it as a time to target: it must not read as faster than the best.
    space = SearchSpace(batch_sizes=(16,), anchor_batch=16, lr_range=(1e-9, 0.5),
                        momentum_fixed=0.9)
    study = optuna.create_study()
    study.enqueue_trial(space.raw_params(batch=16, lr0=1e-9, scaling=0.5))  # never learns
    study.enqueue_trial(space.raw_params(batch=16, lr0=0.3, scaling=0.5))  # reaches it
    study.optimize(objective(space=space, trial_budget_s=2.0, bucket_base=0.002), n_trials=2)
    stuck, fast = study.trials
    assert stuck.state == TrialState.PRUNED and fast.user_attrs["target_reached"]
    assert stuck.intermediate_values and stuck.value > 2.0 > fast.value
    metric = stuck.user_attrs["best_metric"]  # its reports: the censored objective
    assert max(stuck.intermediate_values.values()) <= censored_value(2.0, 0.95, None)
    assert stuck.value >= censored_value(2.0, 0.95, metric)


def test_modeled_time_mode_uses_steps_times_step_model():
    study = optuna.create_study()
    study.optimize(objective(time_mode="modeled", step_model=(0.5, 0.0)), n_trials=1)
    trial = study.trials[0]
    assert trial.value == pytest.approx(0.5 * trial.user_attrs["steps_to_target"])
    assert "measured_time_s" in trial.user_attrs


def test_divergence_is_pruned_with_a_reason_and_never_reports_nan():
    nan_loss = tiny_workload(loss_fn=lambda out, y: F.cross_entropy(out, y) * math.nan)
    study = optuna.create_study()
    study.optimize(objective(nan_loss), n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs["prune_reason"] == "diverged"
    assert all(math.isfinite(v) for v in trial.intermediate_values.values())


class OOMAt(nn.Module):
    """A model that runs out of memory at batches of `limit` or more."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.linear = nn.Linear(8, 3)

    def forward(self, x):
        if self.training and len(x) >= self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.linear(x)


def test_oom_in_a_trial_is_pruned_and_the_study_goes_on():
    workload = tiny_workload(model_factory=lambda: OOMAt(32))
    obj = objective(workload)
    study = optuna.create_study()
    study.enqueue_trial(obj.space.raw_params(batch=32, lr0=0.2, scaling=0.0))
    study.enqueue_trial(obj.space.raw_params(batch=16, lr0=0.2, scaling=0.0))
    study.optimize(obj, n_trials=2)
    first, second = study.trials
    assert first.state == TrialState.PRUNED and first.user_attrs["prune_reason"] == "oom"
    assert second.state == TrialState.COMPLETE and second.user_attrs["batch_size"] == 16


def test_a_non_oom_error_fails_the_trial_and_propagates():
    def broken():
        raise RuntimeError("shape mismatch in user code")

    workload = tiny_workload()
    obj = objective(workload)
    object.__setattr__(workload, "model_factory", broken)
    study = optuna.create_study()
    with pytest.raises(RuntimeError, match="shape mismatch in user code"):
        study.optimize(obj, n_trials=1)
    assert study.trials[0].state == TrialState.FAIL


def test_keyboard_interrupt_fails_the_trial_with_reason_interrupted():
    def interrupting_loss(out, y):
        raise KeyboardInterrupt

    study = optuna.create_study()
    with pytest.raises(KeyboardInterrupt):
        study.optimize(objective(tiny_workload(loss_fn=interrupting_loss)), n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["fail_reason"] == "interrupted"


def test_an_interrupt_on_a_shared_storage_closes_only_this_workers_trial(tmp_path):
    def interrupting_loss(out, y):
        raise KeyboardInterrupt

    study = optuna.create_study(storage=open_storage(f"journal:///{tmp_path}/study.log"))
    others = study.ask()  # another worker's trial, still running
    with pytest.raises(KeyboardInterrupt):
        run_trials(study, objective(tiny_workload(loss_fn=interrupting_loss)), n_trials=4,
                   deadline=math.inf, exclusive=False)
    mine = study.trials[1]
    assert mine.state == TrialState.FAIL and mine.user_attrs["fail_reason"] == "interrupted"
    assert study.trials[others.number].state == TrialState.RUNNING


def test_trials_slower_than_the_best_are_stopped_at_the_best_time():
    study = optuna.create_study()
    obj = objective(space=SearchSpace(batch_sizes=(16, 32), anchor_batch=32,
                                      lr_range=(1e-6, 0.5)))
    study.enqueue_trial(obj.space.raw_params(batch=32, lr0=0.5, scaling=0.0))
    study.enqueue_trial(obj.space.raw_params(batch=16, lr0=1e-6, scaling=0.0))  # hopeless
    study.optimize(obj, n_trials=2)
    fast, slow = study.trials
    assert fast.state == TrialState.COMPLETE
    assert slow.state == TrialState.PRUNED
    assert slow.user_attrs["prune_reason"] == "slower_than_best" or \
        slow.user_attrs["prune_reason"].startswith("plateau")
    assert slow.user_attrs["train_seconds"] <= fast.value + 0.05


def test_intermediate_values_are_reported_on_the_milliseconds_axis():
    study = optuna.create_study()
    frozen = SearchSpace(batch_sizes=(16,), anchor_batch=16, lr_fixed=1e-9)  # never learns
    study.optimize(objective(space=frozen, bucket_base=0.001, target=1.0, trial_budget_s=0.2),
                   n_trials=1)
    steps = sorted(study.trials[0].intermediate_values)
    assert steps and all(s in {bucket_step(k, 0.001) for k in range(100)} for s in steps)


def test_a_trial_cut_short_of_the_target_records_its_extrapolated_time_to_target():
    # a runner whose curve is metric = 0.95 - 0.2 t^-0.8 (0.9 at 5.66 s), cut at 2 s
    curve = CurveFit(m=0.95, a=0.2, c=0.8, sse=0.0)

    class PowerLawRunner(ScriptedRunner):
        def run(self, config, on_eval, segment=Segment()):
            result = super().run(config, on_eval, segment)
            trace = tuple(replace(p, metric=curve.metric_at(p.train_seconds))
                          for p in result.trace)
            return replace(result, trace=trace, best_metric=max(p.metric for p in trace),
                           target_reached=False, time_to_target_s=None, stop_reason="budget")

    space = SearchSpace(batch_sizes=(64,), anchor_batch=64, lr_fixed=0.1, momentum_fixed=0.9)
    obj = Objective(runner=PowerLawRunner(rate={64: 0.0}), space=space, target=0.9,
                    trial_budget_s=2.0, bucket_base=0.1)
    study = optuna.create_study()
    study.optimize(obj, n_trials=1)
    attrs = study.trials[0].user_attrs
    truth = curve.time_to(0.9)
    assert attrs["predicted_time_to_target_s"] == pytest.approx(truth, rel=0.01)
    low, high = attrs["predicted_interval_s"]
    assert low <= truth * (1 + 1e-6) and high >= truth * (1 - 1e-6)  # noise-free: ~a point
    assert attrs["predicted_reachable"] == 1.0


def test_no_trial_starts_in_the_time_kept_for_verification():
    study = optuna.create_study()
    asked = []

    def ends_by() -> float:
        asked.append(len(study.trials))
        return math.inf if len(study.trials) < 2 else 0.0  # kept from the third trial on

    why = run_trials(study, objective(), n_trials=10, deadline=math.inf, exclusive=True,
                     ends_by=ends_by)
    assert why == KEPT_FOR_VERIFICATION and len(study.trials) == 2
    assert asked == [0, 1, 2]


def test_a_worker_stops_at_verify_from_only_once_a_trial_has_reached_the_target():
    study = optuna.create_study()
    ends_by = once_reached(study, 123.0)
    study.add_trial(optuna.trial.create_trial(value=5.0, user_attrs={keys.TARGET_REACHED: False}))
    assert ends_by() == math.inf
    study.add_trial(optuna.trial.create_trial(value=5.0, user_attrs={keys.TARGET_REACHED: True}))
    assert ends_by() == 123.0
