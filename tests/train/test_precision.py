"""Gradient accumulation, mixed precision and channels-last in the one training loop."""

import math
from dataclasses import replace

import pytest
import torch
import torch.distributed as dist
from torch import nn

from autobatch import Budget, Hyperparams, RunConfig, TensorData, run
from autobatch.errors import ConfigError
from autobatch.train import setup_run, train_batches, train_step
from autobatch.train.precision import MAX_SKIPPED_STEPS, PrecisionPolicy, is_divergence
from tests.conftest import tiny_workload


def mlp() -> nn.Module:
    """No BatchNorm: its batch statistics differ per micro-batch, so accumulation would
    not equal one large batch for it."""
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def trained(hparams: Hyperparams, steps: int = 5, model: nn.Module | None = None):
    wl = tiny_workload(model_factory=mlp)
    setup = setup_run(wl, hparams, torch.device("cpu"), seed=3, model=model)
    batches = iter(train_batches(wl, hparams.batch_size, torch.device("cpu"), seed=3))
    losses = [setup.step(wl, *next(batches)).item() for _ in range(steps)]
    return setup.model, losses


@pytest.mark.parametrize("grad_accum", [2, 4])
def test_train_step_accumulation_equals_one_batch_of_the_same_global_size(grad_accum):
    one, one_losses = trained(Hyperparams(batch_size=32, lr=0.1, momentum=0.9))
    acc, acc_losses = trained(Hyperparams(batch_size=32, lr=0.1, momentum=0.9,
                                          grad_accum=grad_accum))
    assert acc_losses == pytest.approx(one_losses, rel=1e-5)
    for a, b in zip(acc.parameters(), one.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.equal(next(acc.parameters()), next(mlp().parameters()))


def test_train_step_on_a_ddp_model_syncs_only_the_last_micro_batch(tmp_path, monkeypatch):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        torch.manual_seed(3)
        ddp = nn.parallel.DistributedDataParallel(mlp())
        syncs = []
        no_sync = ddp.no_sync

        def counted():
            syncs.append(False)
            return no_sync()

        monkeypatch.setattr(ddp, "no_sync", counted)
        model, _ = trained(Hyperparams(batch_size=32, lr=0.1, grad_accum=4), model=ddp)
        plain, _ = trained(Hyperparams(batch_size=32, lr=0.1))
    finally:
        dist.destroy_process_group()
    assert len(syncs) == 5 * 3  # 3 of every 4 micro-batches, over 5 steps
    for a, b in zip(model.module.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_bf16_run_trains_to_a_low_target_on_the_cpu():
    config = RunConfig(batch_size=32, lr=0.1, momentum=0.9, precision="bf16", target=0.9,
                       budget=Budget(steps=300))
    result = run(tiny_workload(model_factory=mlp), config, device="cpu")
    assert result.target_reached and result.stop_reason == "target"
    assert result.config.precision == "bf16" and result.skipped_steps == 0


def test_bf16_autocast_computes_the_forward_pass_in_bf16():
    policy = PrecisionPolicy.of(Hyperparams(batch_size=4, lr=0.1, precision="bf16"),
                                torch.device("cpu"))
    with policy.autocast():
        out = nn.Linear(8, 3)(torch.randn(4, 8))
    assert out.dtype == torch.bfloat16


def test_fp16_on_the_cpu_is_refused_before_any_setup():
    built = []
    wl = tiny_workload(model_factory=lambda: built.append(1) or mlp())
    config = RunConfig(batch_size=32, lr=0.1, precision="fp16", budget=Budget(steps=1))
    with pytest.raises(ConfigError, match="precision 'fp16' needs a CUDA device.*'cpu'"):
        run(wl, config, device="cpu")
    assert built == []


def image_workload(**overrides):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 3, 6, 6, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    data = TensorData(x, y)
    model = lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(),  # noqa: E731
                                  nn.Linear(64, 2))
    return tiny_workload(model_factory=model, train_data=data, val_data=data, **overrides)


def test_a_channels_last_run_keeps_the_model_and_inputs_channels_last():
    hparams = Hyperparams(batch_size=16, lr=0.05, channels_last=True)
    wl = image_workload()
    setup = setup_run(wl, hparams, torch.device("cpu"), seed=0)
    weight = setup.model[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    x = setup.policy.inputs(wl.train_data.x[:16])
    assert x.is_contiguous(memory_format=torch.channels_last)
    result = run(wl, RunConfig.of(hparams, budget=Budget(steps=20)), device="cpu")
    assert result.steps == 20 and result.final_metric is not None


def test_channels_last_on_inputs_that_are_not_4d_is_refused():
    config = RunConfig(batch_size=32, lr=0.1, channels_last=True, budget=Budget(steps=1))
    with pytest.raises(ConfigError, match=r"channels_last needs 4-D inputs.*\(1, 8\)"):
        run(tiny_workload(), config, device="cpu")


@pytest.mark.parametrize(("loss", "skips_in_row", "diverged"), [
    (1.0, 0, False),
    (float("nan"), 0, True),
    (float("inf"), 0, True),
    (-0.5, 0, True),
    (float("inf"), 1, False),  # the scaler skipped this step: an fp16 overflow
    (float("nan"), MAX_SKIPPED_STEPS - 1, False),
    (float("inf"), MAX_SKIPPED_STEPS, True),  # no scale makes the gradients finite
])
def test_is_divergence_tells_a_scaler_skipped_step_from_divergence(loss, skips_in_row,
                                                                   diverged):
    assert is_divergence(loss, skips_in_row) is diverged


def test_a_gradient_scaler_skips_an_overflowing_step_and_the_policy_sees_it():
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    policy = replace(PrecisionPolicy(), scaler=torch.amp.GradScaler("cpu", init_scale=2.0))
    before = [p.detach().clone() for p in model.parameters()]
    wl = tiny_workload(loss_fn=lambda out, y: out.sum() * float("inf"))
    scale = policy.scale()
    loss = train_step(model, optimizer, wl, torch.ones(4, 2), torch.zeros(4, dtype=torch.long),
                      policy=policy)
    assert policy.skipped(scale) and policy.scale() < scale
    assert not is_divergence(loss.item(), 1)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert policy.state()["scale"] == policy.scale()


@pytest.mark.gpu
def test_an_fp16_run_on_cuda_resumes_with_its_scaler_state(tmp_path):
    from autobatch.train import Pause, checkpoint

    config = RunConfig(batch_size=32, lr=0.1, momentum=0.9, precision="fp16", target=1.0,
                       budget=Budget(steps=40), seed=3)
    wl = tiny_workload(model_factory=mlp)
    whole = run(wl, config, device="cuda")
    assert whole.stop_reason == "budget" and whole.steps == 40
    path = tmp_path / "fp16.ckpt"
    run(wl, config, device="cuda", pause=Pause(path, steps=17))
    assert checkpoint.load(path)["scaler"]["scale"] > 0
    resumed = run(wl, config, device="cuda", resume=path)
    assert [p.metric for p in resumed.trace][-1] == [p.metric for p in whole.trace][-1]


def test_a_frameworks_own_trainer_is_not_given_accumulation_or_precision_it_ignores():
    wl = tiny_workload(trainer=lambda *args: pytest.fail("trained"))
    config = RunConfig(batch_size=32, lr=0.1, grad_accum=2, precision="bf16",
                       budget=Budget(steps=1))
    with pytest.raises(ConfigError, match="framework's own trainer: set 1 rank.s. x 2 "
                                          "micro-batch.es. of 16, bf16 there"):
        run(wl, config, device="cpu")


def test_the_loop_counts_scaler_skipped_steps_and_trains_on_instead_of_diverging(monkeypatch):
    """fp16's overflow on the CPU: a gradient scaler over fp32 compute, and a loss that
    overflows on the first three steps (the scaler skips them, then training goes on)."""
    import autobatch.train.setup as setup

    monkeypatch.setattr(setup.PrecisionPolicy, "of", classmethod(
        lambda cls, hparams, device: cls(scaler=torch.amp.GradScaler("cpu"))))
    calls = []

    def overflowing(out, y):
        calls.append(1)
        loss = nn.functional.cross_entropy(out, y)
        return loss * float("inf") if len(calls) <= 3 else loss

    config = RunConfig(batch_size=32, lr=0.1, momentum=0.9, target=0.9,
                       budget=Budget(steps=300))
    result = run(tiny_workload(model_factory=mlp, loss_fn=overflowing), config, device="cpu")
    assert result.stop_reason == "target" and result.skipped_steps == 3
    # the skipped steps' losses are left out of the training loss
    assert all(math.isfinite(p.train_loss) for p in result.trace if p.steps > 3)
