"""Lightning modules as workloads: trials run Lightning's own Trainer."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from autobatch import Budget, RunConfig, WorkloadError, load_workload, run
from tests.conftest import FIXTURES, invoke

pytest.importorskip("lightning")

from autobatch.integrations.lightning import apply  # noqa: E402
from tests.fixtures.user_lightning import Blobs, Counted  # noqa: E402

SPEC = "lightning:user_lightning:Counted"
OPTIONS = {"datamodule": "user_lightning:Blobs", "metric": "val_acc", "app_dir": str(FIXTURES)}


def workload(spec=SPEC, **options):
    return load_workload(spec, **{**OPTIONS, **options})


def test_a_module_and_its_data_module_load_as_a_workload_with_their_defaults():
    wl = workload()
    assert (wl.reference.batch_size, wl.reference.lr, wl.reference.momentum) == (16, 0.1, 0.9)
    assert (len(wl.train_data), len(wl.val_data)) == (256, 64)
    assert wl.spec == {"spec": SPEC, **OPTIONS}
    # the measure stage's optimizer is the one configure_optimizers builds
    optimizer = wl.optimizer_factory(torch.nn.Linear(2, 2).parameters(), 0.3, 0.8)
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.defaults["lr"] == 0.3 and optimizer.defaults["betas"] == (0.8, 0.99)


@pytest.mark.slow
def test_run_trains_with_lightnings_trainer_timing_training_alone():
    wl = workload()
    counted = sys.modules["user_lightning"].Counted  # the class the workload imported
    before = counted.steps
    result = run(wl, RunConfig.of(wl.reference, target=0.9, budget=Budget(seconds=30), seed=0),
                 device="cpu")
    assert result.target_reached and result.stop_reason == "target"
    assert counted.steps - before == result.steps  # the module's own training_step ran
    assert result.samples == 16 * result.steps
    assert result.time_to_target_s == result.trace[-1].train_seconds == result.train_seconds
    assert result.eval_seconds > 0 and result.trace[-1].metric >= 0.9


@pytest.mark.slow
def test_on_eval_true_stops_the_trainer():
    wl = workload()
    config = RunConfig.of(wl.recipe(lr=1e-5), target=1.0, budget=Budget(seconds=30), seed=0)
    result = run(wl, config, device="cpu", on_eval=lambda point: True)
    assert result.stop_reason == "stopped" and len(result.trace) == 1
    assert result.steps == result.trace[0].steps == 256 // 16 // 4  # a quarter epoch


def test_a_module_without_momentum_names_the_convention():
    with pytest.raises(WorkloadError, match=r"NoMomentum takes no 'momentum' keyword: "
                                            r".*Module\(lr=\.\.\., momentum=\.\.\.\)"):
        workload("lightning:user_lightning:NoMomentum")
    with pytest.raises(WorkloadError, match=r"Unsized takes no 'batch_size' keyword"):
        workload(datamodule="user_lightning:Unsized")
    with pytest.raises(WorkloadError, match="needs --datamodule"):
        load_workload(SPEC, metric="val_acc", app_dir=str(FIXTURES))
    with pytest.raises(WorkloadError, match="is not a LightningDataModule subclass"):
        workload(datamodule="user_lightning:blobs")


@pytest.mark.slow
def test_a_metric_the_module_never_logs_names_the_keys_it_did():
    wl = workload(metric="val_f1")
    with pytest.raises(WorkloadError, match=r"never logged metric 'val_f1' during validation "
                                            r"\(it logged: val_acc, val_loss\)"):
        run(wl, RunConfig.of(wl.reference, target=0.9, budget=Budget(seconds=30)),
            device="cpu")


def test_apply_sets_the_result_on_the_module_and_the_data_module():
    module, data = Counted(), Blobs()
    recipe = apply({"workload": SPEC, "batch_size": 64, "lr": 0.02, "momentum": 0.95},
                   module=module, datamodule=data)
    assert (module.hparams.lr, module.hparams.momentum, data.batch_size) == (0.02, 0.95, 64)
    assert module.configure_optimizers()["optimizer"].defaults["lr"] == 0.02
    assert recipe.batch_size == 64


@pytest.mark.slow
def test_the_command_line_runs_a_lightning_module_and_names_a_missing_metric():
    base = ["run", "--workload", SPEC, "--datamodule", OPTIONS["datamodule"],
            "--app-dir", OPTIONS["app_dir"], "--device", "cpu", "--budget", "30s",
            "--target", "0.9"]
    ran = invoke(*base, "--metric", "val_acc", "--json")
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["target_reached"]
    missing = invoke(*base, "--metric", "val_f1")
    assert missing.exit_code == 2 and "never logged metric 'val_f1'" in missing.stderr
