"""The gradient noise scale: exact two-batch arithmetic, checked against per-example
gradients (torch.func) on a tiny model."""

import random

import pytest
import torch
from torch import nn

from autobatch import ConfigError
from autobatch.measure.noise import (
    NoiseEstimate,
    b_simple,
    estimate,
    exact_noise_scale,
    grad_sq_norm,
    inverse_batch,
    measure_noise,
    two_batch,
)
from autobatch.train.setup import train_step
from tests.conftest import tiny_workload


@pytest.mark.parametrize("population", [None, 1000])
def test_two_batch_inverts_the_expected_squared_norms_exactly(population):
    g2, trace = 4.0, 100.0
    small = g2 + trace * inverse_batch(10, population)
    big = g2 + trace * inverse_batch(100, population)
    assert two_batch(small, big, 10, 100, population) == (pytest.approx(g2),
                                                          pytest.approx(trace))


def test_inverse_batch_is_one_over_b_and_zero_for_the_whole_population():
    assert inverse_batch(8, None) == 1 / 8
    assert inverse_batch(1, 100) == 1.0  # one sample: the full per-sample variance
    assert inverse_batch(100, 100) == 0.0  # the whole set: no noise left


def test_b_simple_is_none_when_the_gradient_is_not_resolved_and_zero_without_noise():
    assert b_simple(4.0, 100.0) == 25.0
    assert b_simple(0.0, 100.0) is None and b_simple(-1.0, 100.0) is None
    assert b_simple(4.0, -3.0) == 0.0


@pytest.mark.parametrize("kwargs, match", [
    ({"b_small": 10, "b_big": 10}, "b_small < b_big"),
    ({"b_small": 10, "b_big": 200, "population": 100}, "population"),
])
def test_two_batch_rejects_impossible_batch_pairs(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        two_batch(1.0, 0.5, **kwargs)


def test_estimate_needs_paired_draws():
    with pytest.raises(ConfigError, match="paired draws"):
        estimate([1.0], [0.5], 10, 100)


def test_estimate_unresolved_draws_leave_the_upper_bound_open():
    # |G|^2 = (64 * big - 4 * small) / 60 < 0 on average: the noise hides the gradient,
    # though some resamples (big draws of 1.4 only) resolve it.
    value, low, high, g2, _ = estimate([16.0] * 8, [0.4, 1.4] * 4, 4, 64)
    assert g2 < 0 and value is None and high is None
    assert low is not None and low > 0


def per_example_gradients(model, x, y):
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p, xi, yi):
        return nn.functional.cross_entropy(functional_call(model, p, (xi[None],)), yi[None])

    grads = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    return torch.cat([g.reshape(len(x), -1) for g in grads.values()], dim=1).double()


@pytest.fixture
def checkpoint():
    """A tiny model trained a few steps (B_simple at initialisation means little)."""
    torch.manual_seed(0)
    workload = tiny_workload(n_train=512)
    model = nn.Linear(8, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    data = workload.train_data
    for i in range(10):
        train_step(model, optimizer, workload, data.x[i * 16:(i + 1) * 16],
                   data.y[i * 16:(i + 1) * 16])
    return workload, model


def test_exact_noise_scale_matches_per_example_gradients(checkpoint):
    workload, model = checkpoint
    x, y = workload.train_data.x, workload.train_data.y
    per_example = per_example_gradients(model, x, y)
    mean = per_example.mean(0)
    expected_trace = float(((per_example - mean) ** 2).sum() / (len(x) - 1))
    value, g2, trace = exact_noise_scale(model, workload.loss_fn, x, y)
    assert g2 == pytest.approx(float(mean @ mean), rel=1e-9)
    assert trace == pytest.approx(expected_trace, rel=1e-9)
    assert value == pytest.approx(expected_trace / float(mean @ mean), rel=1e-9)


def test_grad_sq_norm_is_the_norm_of_the_mean_per_example_gradient(checkpoint):
    workload, model = checkpoint
    x, y = workload.train_data.x[:32], workload.train_data.y[:32]
    mean = per_example_gradients(model, x, y).mean(0)
    assert grad_sq_norm(model, workload, x, y) == pytest.approx(float(mean @ mean), rel=1e-6)
    assert all(p.grad is None for p in model.parameters())


def test_estimate_from_sampled_batches_finds_the_exact_noise_scale(checkpoint):
    """Batches drawn without replacement from the exact per-example gradients: the
    ratio of means lands on tr(Sigma)/|G|^2 and the interval covers it."""
    workload, model = checkpoint
    x, y = workload.train_data.x, workload.train_data.y
    per_example = per_example_gradients(model, x, y)
    exact, _, _ = exact_noise_scale(model, workload.loss_fn, x, y)
    rng = random.Random(0)
    n = len(x)

    def sq_norm(batch):
        g = per_example[rng.sample(range(n), batch)].mean(0)
        return float(g @ g)

    small = [sq_norm(4) for _ in range(400)]
    big = [sq_norm(128) for _ in range(400)]
    value, low, high, g2, trace = estimate(small, big, 4, 128, population=n)
    assert value == pytest.approx(exact, rel=0.10)
    assert low <= exact <= high
    assert trace / g2 == pytest.approx(value)


def test_measure_noise_on_a_checkpoint_agrees_with_per_example_gradients(checkpoint):
    workload, model = checkpoint
    exact, _, _ = exact_noise_scale(model, workload.loss_fn, workload.train_data.x,
                                    workload.train_data.y)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    result = measure_noise(model, optimizer, workload, torch.device("cpu"), b_small=4,
                           b_big=128, draws=300, seed=1)
    assert result.b_simple == pytest.approx(exact, rel=0.25)
    assert result.low <= result.b_simple <= result.high
    assert (result.draws, result.population, result.warmup_steps) == (300, 512, 0)
    for key, value in model.state_dict().items():  # no warm-up: the checkpoint stays put
        assert torch.equal(value, before[key])
    assert NoiseEstimate.from_dict(result.to_dict()) == result


def test_measure_noise_warms_up_before_measuring(checkpoint):
    workload, model = checkpoint
    before = model.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    result = measure_noise(model, optimizer, workload, torch.device("cpu"), b_small=4,
                           b_big=64, draws=8, warmup_steps=5, warmup_batch=32)
    assert result.warmup_steps == 5
    assert not torch.equal(model.weight, before)
    with pytest.raises(ConfigError, match="draws"):
        measure_noise(model, optimizer, workload, torch.device("cpu"), b_small=4,
                      b_big=64, draws=1)
