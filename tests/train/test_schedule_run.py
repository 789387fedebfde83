"""The training loop under an LR schedule: the LR it sets at every optimizer step, the
horizon as the end of a run, and lr_scheduler() reproducing the same LRs."""

import torch

from autobatch import Budget, RunConfig, lr_scheduler, run
from autobatch.result import StudyInfo, TuneResult
from autobatch.schedule import Schedule
from tests.conftest import candidate, tiny_workload, unreachable_workload

COSINE = Schedule(name="cosine", warmup="10%", horizon="3epochs")


class Recorder:
    """An SGD factory that records the LR of every update."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def __call__(self, params, lr, momentum):
        lrs = self.lrs

        class RecordingSGD(torch.optim.SGD):
            def step(self, closure=None):
                lrs.append(self.param_groups[0]["lr"])
                return super().step(closure)

        return RecordingSGD(params, lr=lr, momentum=momentum)


def trained_lrs(schedule: Schedule, **run_fields) -> tuple[list[float], object]:
    recorder = Recorder()
    workload = tiny_workload(optimizer_factory=recorder)  # 256 samples: 16 batches of 16
    config = RunConfig(batch_size=16, lr=0.2, schedule=schedule,
                       **{"budget": Budget(steps=200), **run_fields})
    return recorder.lrs, run(workload, config, device="cpu")


def scheduler_lrs(result, steps: int, **kwargs) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.2)
    scheduler = lr_scheduler(result, optimizer, **kwargs)
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def tune_result(schedule: Schedule) -> TuneResult:
    best = candidate(batch_size=16, lr=0.2, schedule=schedule)
    return TuneResult(workload="tiny", target=0.9, device="cpu", best=best, candidates=(best,),
                      prior={}, study=StudyInfo(name="s", storage="sqlite:///x", trials={}),
                      tuning_seconds=1.0, train_size=256)


def test_the_trainer_sets_the_scheduled_lr_at_every_step_and_stops_at_the_horizon():
    lrs, result = trained_lrs(COSINE)
    assert result.schedule == COSINE.resolve(16)  # 48 steps, 5 of warmup
    assert result.steps == len(lrs) == 48 and result.stop_reason == "budget"
    assert lrs == [0.2 * result.schedule.lr_at(k) for k in range(48)]
    assert lrs[0] == 0.2 * (1 / 5) and max(lrs) == 0.2 and lrs[-1] < 0.001
    assert result.trace[-1].lr == lrs[-1]
    assert result.to_dict()["schedule"]["horizon_steps"] == 48


def test_lr_scheduler_reproduces_the_trainers_lr_at_every_step():
    for schedule in (COSINE, Schedule(name="wsd", warmup="8steps", horizon="2epochs"),
                     Schedule(name="linear", horizon="40steps"), Schedule(warmup="1epochs")):
        lrs, result = trained_lrs(schedule, budget=Budget(steps=60))
        tuned = tune_result(schedule)
        assert scheduler_lrs(tuned, len(lrs)) == lrs, schedule
        assert scheduler_lrs(tuned.to_dict(), len(lrs), steps_per_epoch=16) == lrs, schedule


def test_a_run_that_reaches_the_target_stops_before_the_horizon():
    config = RunConfig(batch_size=16, lr=0.5, target=0.9, budget=Budget(steps=2000),
                       schedule=Schedule(name="cosine", horizon="100epochs"))
    result = run(tiny_workload(), config, device="cpu")
    assert result.stop_reason == "target" and result.steps < 1600


def test_a_horizon_without_the_target_is_censored_like_a_budget():
    config = RunConfig(batch_size=16, lr=0.5, target=0.9, budget=Budget(seconds=60),
                       schedule=Schedule(name="linear", horizon="30steps"))
    result = run(unreachable_workload(), config, device="cpu")
    assert (result.stop_reason, result.target_reached, result.steps) == ("budget", False, 30)


def test_a_constant_run_keeps_its_lr():
    lrs, result = trained_lrs(Schedule(), budget=Budget(steps=20))
    assert lrs == [0.2] * 20 and {p.lr for p in result.trace} == {0.2}
