import math

import pytest
import torch.nn.functional as F

from autobatch import Budget, RunConfig, load_workload, run
from autobatch.device import rss_bytes
from autobatch.train.loop import EVAL_SHARE, next_eval_at
from tests.conftest import tiny_workload, unreachable_workload


class FakeClock:
    """Advances only when the workload says so: 1 unit per training step, `eval_cost`
    per validation batch, so train and eval time are known exactly."""

    def __init__(self, step_cost: float = 1.0, eval_cost: float = 100.0) -> None:
        self.now = 0.0
        self.step_cost = step_cost
        self.eval_cost = eval_cost

    def __call__(self) -> float:
        return self.now

    def workload(self, **overrides):
        def loss(out, y):
            self.now += self.step_cost
            return F.cross_entropy(out, y)

        def metric(out, y):
            self.now += self.eval_cost
            return (out.argmax(-1) == y).sum()

        return tiny_workload(loss_fn=loss, metric_fn=metric, eval_batch_size=10_000,
                             **overrides)


def test_training_time_excludes_evaluation():
    clock = FakeClock(step_cost=1.0, eval_cost=100.0)
    config = RunConfig(batch_size=16, lr=1e-9, target=1.0, budget=Budget(steps=50))
    result = run(clock.workload(), config, device="cpu", clock=clock)
    assert result.steps == 50
    assert result.train_seconds == pytest.approx(50.0)
    assert result.eval_seconds == pytest.approx(100.0 * len(result.trace))
    assert [p.train_seconds for p in result.trace] == [p.steps for p in result.trace]


def test_evaluations_are_geometric_and_cost_bounded():
    clock = FakeClock(step_cost=1.0, eval_cost=1.0)
    # an LR too small to learn anything, so the target is never reached
    config = RunConfig(batch_size=16, lr=1e-9, target=1.0, budget=Budget(steps=400),
                       eval_resolution=0.1)
    result = run(clock.workload(), config, device="cpu", clock=clock)
    steps = [p.steps for p in result.trace]
    assert steps[0] == 1
    for before, after in zip(steps, steps[1:-1]):
        # the first step at or after the scheduled time: gap is max(10%, eval/share)
        assert after == math.ceil(max(before * 1.1, before + 1.0 / EVAL_SHARE))
    assert steps[-1] == 400  # the budget's end is always evaluated
    assert len(steps) < 60  # logarithmic, not one per step


def test_next_eval_at_respects_resolution_and_eval_share():
    config = RunConfig(batch_size=8, lr=0.1, target=0.9, eval_resolution=0.05)
    assert next_eval_at(100.0, 0.0, config) == pytest.approx(105.0)
    assert next_eval_at(100.0, 10.0, config) == pytest.approx(100.0 + 10.0 / EVAL_SHARE)
    assert next_eval_at(100.0, 0.0, RunConfig(batch_size=8, lr=0.1)) == math.inf


def test_without_target_only_the_final_evaluation_runs():
    clock = FakeClock()
    result = run(clock.workload(), RunConfig(batch_size=16, lr=0.01, budget=Budget(steps=30)),
                 device="cpu", clock=clock)
    assert [p.steps for p in result.trace] == [30]
    assert result.stop_reason == "budget" and not result.target_reached


def test_budget_in_epochs_and_seconds():
    clock = FakeClock(step_cost=1.0, eval_cost=0.0)
    workload = clock.workload()  # 256 training samples
    by_epochs = run(workload, RunConfig(batch_size=32, lr=0.01, budget=Budget(epochs=2)),
                    device="cpu", clock=clock)
    assert by_epochs.steps == 16 and by_epochs.epochs == pytest.approx(2.0)
    by_seconds = run(workload, RunConfig(batch_size=32, lr=0.01, budget=Budget(seconds=7)),
                     device="cpu", clock=clock)
    assert by_seconds.steps == 7


def test_reaches_target_and_reports_the_first_crossing():
    config = RunConfig(batch_size=32, lr=0.1, target=0.95, budget=Budget(seconds=30))
    result = run(tiny_workload(), config, device="cpu")
    assert result.target_reached and result.stop_reason == "target"
    first = next(p for p in result.trace if p.metric >= 0.95)
    assert first is result.trace[-1]
    assert result.time_to_target_s == first.train_seconds
    assert result.steps_to_target == first.steps
    assert result.samples_to_target == first.steps * 32
    assert all(p.metric < 0.95 for p in result.trace[:-1])


def test_divergence_stops_at_once_and_never_reports_nan():
    workload = tiny_workload(loss_fn=lambda out, y: F.cross_entropy(out, y) * float("nan"))
    result = run(workload, RunConfig(batch_size=16, lr=0.1, target=0.9), device="cpu")
    assert result.stop_reason == "diverged"
    assert result.steps == 1
    assert result.trace == ()
    assert result.best_metric is None


class LossTurnsBad:
    """Cross-entropy for `good_steps` steps, then `bad`; each step costs 1 s on `clock`."""

    def __init__(self, good_steps: int, bad: float, clock: FakeClock) -> None:
        self.good_steps, self.bad, self.calls, self.clock = good_steps, bad, 0, clock

    def __call__(self, out, y):
        self.calls += 1
        self.clock.now += 1.0
        loss = F.cross_entropy(out, y)
        return loss if self.calls <= self.good_steps else loss * 0 + self.bad


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0])
def test_a_loss_that_turns_bad_after_good_evaluations_stops_the_run_as_diverged(bad):
    # On a fake clock the evaluations follow the steps, however fast this machine is.
    clock = FakeClock(eval_cost=0.0)
    workload = unreachable_workload(loss_fn=LossTurnsBad(200, bad, clock))
    result = run(workload, RunConfig(batch_size=16, lr=0.1, target=0.9,
                                     budget=Budget(steps=1000)), device="cpu", clock=clock)
    assert result.stop_reason == "diverged"
    assert result.steps == 201
    assert result.trace  # evaluated while the loss was still good
    assert all(math.isfinite(p.train_loss) and p.train_loss >= 0 for p in result.trace)


def test_run_reports_the_peak_resident_memory_of_its_process_on_cpu():
    result = run(tiny_workload(), RunConfig(batch_size=16, lr=0.1, budget=Budget(steps=5)),
                 device="cpu")
    # the process's peak RSS (torch included): hundreds of MiB, in bytes, not KiB
    assert rss_bytes() // 2 <= result.peak_memory_bytes <= 64 * 2**30


def test_on_eval_returning_true_stops_the_run():
    seen = []

    def stop_on_third(point):
        seen.append(point)
        return len(seen) == 3

    clock = FakeClock(eval_cost=0.0)
    result = run(clock.workload(), RunConfig(batch_size=16, lr=1e-4, target=1.0,
                                             budget=Budget(steps=1000)),
                 device="cpu", on_eval=stop_on_third, clock=clock)
    assert result.stop_reason == "stopped" and len(result.trace) == 3


def test_same_seed_gives_the_same_training():
    clock = FakeClock(eval_cost=0.0)
    config = RunConfig(batch_size=16, lr=0.05, budget=Budget(steps=40), seed=3)
    a = run(clock.workload(), config, device="cpu", clock=clock)
    b = run(clock.workload(), config, device="cpu", clock=clock)
    assert a.trace[-1].train_loss == b.trace[-1].train_loss
    assert a.final_metric == b.final_metric


def test_result_to_dict_is_strict_json():
    import json

    clock = FakeClock()
    result = run(clock.workload(), RunConfig(batch_size=16, lr=0.01, budget=Budget(steps=5)),
                 device="cpu", clock=clock)
    payload = result.to_dict()
    json.dumps(payload, allow_nan=False)
    assert payload["config"]["budget"] == {"seconds": None, "steps": 5, "epochs": None}
    assert payload["trace"][0]["steps"] == 5


def test_mnist1d_cnn_reaches_90_percent_at_the_known_good_config():
    # The domain's best grid cell (B=256, LR=0.3, momentum 0.9) reaches 90% in ~270 steps.
    config = RunConfig(batch_size=256, lr=0.3, momentum=0.9, target=0.9,
                       budget=Budget(steps=1500))
    result = run(load_workload("mnist1d-cnn"), config, device="cpu")
    assert result.target_reached
    assert 100 < result.steps_to_target < 1000


def test_mnist1d_cnn_diverges_at_lr_30():
    config = RunConfig(batch_size=256, lr=30, momentum=0.9, target=0.9)
    result = run(load_workload("mnist1d-cnn"), config, device="cpu")
    assert result.stop_reason == "diverged"
    assert result.steps < 20
