import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from autobatch import Budget, RunConfig, Schedule, TensorData, run
from autobatch.errors import CheckpointError
from autobatch.train import checkpoint
from autobatch.train.checkpoint import Pause
from tests.conftest import blobs
from tests.train.test_train import FakeClock

# 256 samples in batches of 16: 16 steps an epoch, so the pauses below fall inside
# epochs and on their boundaries, with a decaying LR and Adam's state in flight.
CONFIG = RunConfig(batch_size=16, lr=3e-3, momentum=0.9, optimizer="adam", target=1.0,
                   budget=Budget(steps=60), schedule=Schedule(name="cosine", warmup="5steps"),
                   seed=7)


def noisy_model() -> nn.Module:
    """BatchNorm buffers and dropout's draws from torch's generator: both must resume."""
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(16, 3))


def workload(clock: FakeClock, dataset: bool = False):
    """Never reaches its target (shifted validation labels): every run trains 60 steps."""
    train, val = blobs(256, seed=0), blobs(64, seed=1)
    val = TensorData(val.x, (val.y + 1) % 3)
    return clock.workload(model_factory=noisy_model,
                          train_data=TensorDataset(train.x, train.y) if dataset else train,
                          val_data=val)


def segments(tmp_path, stops: list[int], *, config: RunConfig = CONFIG, dataset=False):
    """Train in segments paused at `stops` (steps), each resumed in a fresh setup from the
    last checkpoint; returns the last result and the checkpoint at the last stop."""
    clock = FakeClock(step_cost=1.0, eval_cost=0.25)
    wl = workload(clock, dataset)
    resume = None
    for i, steps in enumerate(stops):
        path = tmp_path / f"{len(stops)}-{i}.ckpt"
        result = run(wl, config, device="cpu", clock=clock, resume=resume,
                     pause=Pause(path, steps=steps))
        assert (result.stop_reason, result.steps, result.checkpoint) == \
            ("paused", steps, str(path))
        resume = path
    return result, checkpoint.load(resume)


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert_equal(a[key], b[key], key)


def assert_equal(a, b, where: str) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equal(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


@pytest.mark.parametrize("dataset", [False, True], ids=["tensors", "dataset"])
def test_a_paused_and_resumed_run_equals_an_uninterrupted_one(tmp_path, dataset):
    once, once_state = segments(tmp_path, [50], dataset=dataset)
    twice, twice_state = segments(tmp_path, [23, 50], dataset=dataset)
    assert twice.trace == once.trace and len(once.trace) > 5
    assert (twice.steps, twice.samples, twice.train_seconds) == (once.steps, once.samples, 50)
    # parameters, BatchNorm buffers, Adam's moments, the LR, the data order, the RNGs
    assert_same_state(twice_state, once_state)
    # and the rest of the run after the pause as well
    clock = FakeClock(step_cost=1.0, eval_cost=0.25)
    ends = [run(workload(clock, dataset), CONFIG, device="cpu", clock=clock, resume=resume)
            for resume in (None, tmp_path / "2-0.ckpt")]
    assert ends[0].trace == ends[1].trace
    assert ends[1].steps == 60 and ends[1].stop_reason == "budget"


@pytest.mark.parametrize("recipe", [{"grad_accum": 2}, {"grad_accum": 4, "precision": "bf16"}],
                         ids=["accumulation", "accumulation-bf16"])
def test_a_resumed_run_with_accumulation_equals_an_uninterrupted_one(tmp_path, recipe):
    config = RunConfig(**{**CONFIG.values(), "target": 1.0, "budget": Budget(steps=60),
                          "seed": 7, **recipe})
    once, once_state = segments(tmp_path, [41], config=config)
    twice, twice_state = segments(tmp_path, [13, 41], config=config)
    assert twice.trace == once.trace and len(once.trace) > 5
    assert_same_state(twice_state, once_state)
    assert once_state["identity"]["grad_accum"] == recipe["grad_accum"]


def test_pausing_several_times_equals_pausing_once(tmp_path):
    once, once_state = segments(tmp_path, [47])
    # in an epoch, on its last step (16), at an evaluation's step, one step apart
    many, many_state = segments(tmp_path, [5, 16, 17, 32, 47])
    assert many.trace == once.trace
    assert_same_state(many_state, once_state)


def test_a_resumed_run_reaches_the_target_at_the_same_step(tmp_path):
    clock = FakeClock(step_cost=1.0, eval_cost=0.25)
    wl = clock.workload()
    config = RunConfig(batch_size=16, lr=0.002, momentum=0.9, target=0.95,
                       budget=Budget(steps=400), seed=3)
    whole = run(wl, config, device="cpu", clock=clock)
    assert whole.target_reached and whole.steps_to_target >= 4
    path = tmp_path / "half.ckpt"
    run(wl, config, device="cpu", clock=clock,
        pause=Pause(path, steps=whole.steps_to_target // 2))
    resumed = run(wl, config, device="cpu", clock=clock, resume=path)
    assert resumed.steps_to_target == whole.steps_to_target
    assert resumed.time_to_target_s == whole.time_to_target_s
    assert resumed.trace == whole.trace


def test_a_run_pauses_at_a_training_time(tmp_path):
    clock = FakeClock(step_cost=1.0, eval_cost=0.25)
    path = tmp_path / "t.ckpt"
    result = run(workload(clock), CONFIG, device="cpu", clock=clock,
                 pause=Pause(path, seconds=12.0))
    assert (result.stop_reason, result.steps, result.train_seconds) == ("paused", 12, 12.0)
    assert checkpoint.load(path)["loop"]["steps"] == 12


@pytest.fixture
def paused(tmp_path):
    clock = FakeClock()
    path = tmp_path / "p.ckpt"
    run(workload(clock), CONFIG, device="cpu", clock=clock, pause=Pause(path, steps=10))
    return path


def test_a_torn_checkpoint_is_refused(paused):
    raw = paused.read_bytes()
    paused.write_bytes(raw[:len(raw) - 100])
    with pytest.raises(CheckpointError, match=r"is torn: \d+ of \d+ bytes"):
        run(workload(FakeClock()), CONFIG, device="cpu", resume=paused)


def test_a_corrupt_checkpoint_is_refused(paused):
    raw = bytearray(paused.read_bytes())
    raw[-10] ^= 0xFF
    paused.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="is corrupt: its checksum does not match"):
        checkpoint.load(paused)


@pytest.mark.parametrize(("content", "match"), [
    (b"", "is not an autobatch checkpoint"),
    (b"PK\x03\x04 a zip file\n...", "is not an autobatch checkpoint"),
    (b"autobatch-checkpoint 9 3 abc\nabc", "has format '9'; this version reads 1"),
])
def test_a_file_that_is_no_checkpoint_is_refused(tmp_path, content, match):
    path = tmp_path / "x.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        checkpoint.load(path)


def test_a_missing_checkpoint_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*gone.ckpt"):
        checkpoint.load(tmp_path / "gone.ckpt")


@pytest.mark.parametrize(("change", "match"), [
    ({"lr": 1e-3}, "written with lr 0.003, not 0.001"),
    ({"batch_size": 32}, "written with batch_size 16, not 32"),
    ({"seed": 8}, "written with seed 7, not 8"),
])
def test_a_checkpoint_of_another_run_is_refused(paused, change, match):
    config = RunConfig(**{**CONFIG.values(), "target": 1.0, "budget": Budget(steps=60),
                          "seed": 7, **change})
    with pytest.raises(CheckpointError, match=match):
        run(workload(FakeClock()), config, device="cpu", resume=paused)


def test_a_pause_needs_a_point():
    with pytest.raises(CheckpointError, match="a pause needs seconds or steps"):
        Pause("x.ckpt")
    with pytest.raises(CheckpointError, match="pause steps must be 1 or more"):
        Pause("x.ckpt", steps=0)


def test_a_constant_trunk_resumes_into_a_cooldown_branch(tmp_path):
    """The schedule is not part of a checkpoint's identity: one constant-LR trunk can
    continue into several cooldowns (WSD), each resumed from the same pause."""
    clock = FakeClock(step_cost=1.0, eval_cost=0.25)
    trunk = RunConfig(**{**CONFIG.values(), "schedule": Schedule(), "target": 1.0,
                         "budget": Budget(steps=60), "seed": 7})
    path = tmp_path / "trunk.ckpt"
    run(workload(clock), trunk, device="cpu", clock=clock, pause=Pause(path, steps=20))
    ends = []
    for horizon in (30, 40):
        branch = RunConfig(**{**trunk.values(), "target": 1.0, "budget": Budget(steps=60),
                              "seed": 7, "schedule": Schedule(name="wsd", cooldown=0.25,
                                                              horizon=f"{horizon}steps")})
        ends.append(run(workload(clock), branch, device="cpu", clock=clock, resume=path))
    assert [end.steps for end in ends] == [30, 40]
    assert [end.trace[-1].lr < 0.1 * CONFIG.lr for end in ends] == [True, True]
    assert ends[0].trace[0] == ends[1].trace[0]  # the trunk's evaluations, shared
