"""Run setup: the seeded model, a private copy when asked, on the device with its optimizer."""

import torch
from torch import nn

from autobatch import Hyperparams
from autobatch.train import fresh_model, setup_run
from tests.conftest import tiny_workload


def test_fresh_model_with_a_seed_is_the_same_model_every_time():
    wl = tiny_workload()
    first, second = fresh_model(wl, seed=3), fresh_model(wl, seed=3)
    assert torch.equal(first.weight, second.weight)
    assert not torch.equal(first.weight, fresh_model(wl, seed=4).weight)


def test_fresh_model_private_copies_a_model_the_factory_hands_out():
    mine = nn.Linear(8, 3)
    wl = tiny_workload(model_factory=lambda: mine)
    assert fresh_model(wl) is mine
    private = fresh_model(wl, private=True)
    assert private is not mine and torch.equal(private.weight, mine.weight)


def test_setup_run_trains_the_given_model_with_the_recipes_optimizer():
    model = nn.Linear(8, 3).eval()
    setup = setup_run(tiny_workload(), Hyperparams(batch_size=8, lr=0.5, momentum=0.8,
                                                   optimizer="sgd"),
                      torch.device("cpu"), model=model)
    assert setup.model is model and model.training
    assert isinstance(setup.optimizer, torch.optim.SGD)
    assert setup.optimizer.param_groups[0]["lr"] == 0.5
    assert setup.optimizer.param_groups[0]["momentum"] == 0.8
