"""Lightning: a LightningModule and its DataModule as a workload, trained by Lightning.

The convention: the module takes `lr` and `momentum` keyword arguments (e.g. kept
with save_hyperparameters()) and builds its optimizer from them in
configure_optimizers; the data module takes `batch_size`; the metric is a key the
module logs during validation; forward(x) returns logits.

Trials and `autobatch run` train with Lightning's own Trainer, so the module's
training step, logging and callbacks are what gets timed: a callback keeps the
training clock (validation excluded), sets the recipe's LR schedule on the first
optimizer before each step, hands every validation to the pruner and stops the
trainer when pruned. The probe, the profile, the LR range test and the noise scale
measure the module's forward pass under cross-entropy with the optimizer its
configure_optimizers builds, on the data module's datasets.
"""

from __future__ import annotations

import inspect
import logging
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from autobatch.config import RunConfig
from autobatch.errors import WorkloadError
from autobatch.hyperparams import Hyperparams
from autobatch.integrations.extras import require
from autobatch.integrations.tracker import Tracker
from autobatch.recipe import RecipeSource, load_recipe
from autobatch.train import EvalCallback, RunResult
from autobatch.workloads import Workload
from autobatch.workloads.entry_point import import_attr

L = require("lightning.pytorch", "lightning")

PREFIX = "lightning:"
EVALS_PER_EPOCH = 4  # Lightning validates at fixed points: four per epoch


def accepts(cls: type, name: str) -> bool:
    params = inspect.signature(cls).parameters.values()
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def default_of(cls: type, name: str) -> Any:
    param = inspect.signature(cls).parameters.get(name)
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def user_class(spec: str, app_dir: str | None, base: type, what: str,
               keywords: tuple[str, ...]) -> type:
    """The class `spec` names, checked against the convention for `what`."""
    cls = import_attr(spec, app_dir)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise WorkloadError(f"{spec!r} is not a {base.__name__} subclass")
    for keyword in keywords:
        if not accepts(cls, keyword):
            raise WorkloadError(
                f"{what} {cls.__name__} takes no {keyword!r} keyword: autobatch's Lightning "
                f"convention is a module built as Module(lr=..., momentum=...) (e.g. kept with "
                f"save_hyperparameters()) and a data module built as Data(batch_size=...)")
    return cls


def first_optimizer(configured: Any) -> torch.optim.Optimizer:
    """The first optimizer of what configure_optimizers returned (any of its forms)."""
    if isinstance(configured, torch.optim.Optimizer):
        return configured
    if isinstance(configured, Mapping):
        return first_optimizer(configured["optimizer"])
    if isinstance(configured, (list, tuple)) and configured:
        return first_optimizer(configured[0])
    raise WorkloadError(f"configure_optimizers returned {type(configured).__name__}: "
                        "expected an optimizer (or a list or dict holding one)")


def batch_samples(batch: Any) -> int:
    """Samples in a batch: the length of its first tensor."""
    if isinstance(batch, torch.Tensor):
        return len(batch)
    if isinstance(batch, Mapping):
        return batch_samples(next(iter(batch.values())))
    return batch_samples(batch[0])


@dataclass(frozen=True)
class LightningTrainer:
    """Workload.trainer for a Lightning module: fits it with Lightning's Trainer."""

    module_cls: type
    data_cls: type
    metric: str

    def __call__(self, workload: Workload, config: RunConfig, device: torch.device,
                 on_eval: EvalCallback | None) -> RunResult:
        torch.manual_seed(config.seed)
        module = self.module_cls(lr=config.lr, momentum=config.momentum)
        data = self.data_cls(batch_size=config.batch_size)
        tracker = Tracker(workload, config, device, on_eval, metric=self.metric)
        accelerator = {"cpu": "cpu", "cuda": "gpu", "mps": "mps"}.get(device.type, "auto")
        quiet = logging.getLogger("lightning.pytorch")
        level = quiet.level
        quiet.setLevel(logging.WARNING)  # its device banner and tips, on every trial
        try:
            trainer = L.Trainer(
                accelerator=accelerator,
                devices=[device.index or 0] if device.type == "cuda" else 1,
                max_epochs=-1, max_steps=-1, val_check_interval=1 / EVALS_PER_EPOCH,
                num_sanity_val_steps=0, callbacks=[Timing(tracker)], logger=False,
                enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", ".*does not have many workers.*")
                warnings.filterwarnings("ignore", ".*LeafSpec.*")  # inside Lightning itself
                trainer.fit(module, datamodule=data)
        finally:
            quiet.setLevel(level)
        return tracker.result()


class Timing(L.Callback):
    """Lightning's side of the Tracker (see tracker.py)."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.tracker.start(trainer.optimizers[0])

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any,
                             batch_idx: int) -> None:
        self.tracker.set_lr(trainer.optimizers[0])

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs
        value = float(loss) if loss is not None else math.nan
        if self.tracker.stepped(batch_samples(batch), value):
            trainer.should_stop = True

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self.tracker.evaluating()

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if self.tracker.evaluated(trainer.callback_metrics):
            trainer.should_stop = True


def load(spec: str, datamodule: str | None = None, metric: str | None = None,
         app_dir: str | None = None) -> Workload:
    """`lightning:package.module:Module` with --datamodule and --metric as a Workload."""
    if datamodule is None:
        raise WorkloadError(f"{spec} needs --datamodule package.module:DataModule")
    if metric is None:
        raise WorkloadError(f"{spec} needs --metric: a key the module logs during validation")
    module_cls = user_class(spec.removeprefix(PREFIX), app_dir, L.LightningModule,
                            "LightningModule", ("lr", "momentum"))
    data_cls = user_class(datamodule, app_dir, L.LightningDataModule, "LightningDataModule",
                          ("batch_size",))
    lr, momentum = default_of(module_cls, "lr"), default_of(module_cls, "momentum")
    batch = default_of(data_cls, "batch_size")
    reference = (Hyperparams(batch_size=batch, lr=lr, momentum=momentum)
                 if None not in (lr, momentum, batch) else None)
    data = data_cls(batch_size=batch or 32)
    data.prepare_data()
    data.setup("fit")
    build_lr, build_momentum = (lr, momentum) if reference else (0.01, 0.9)

    def optimizer(params: Any, lr: float, momentum: float) -> torch.optim.Optimizer:
        # The module's own optimizer (type and settings) over the measured parameters.
        built = first_optimizer(module_cls(lr=lr, momentum=momentum).configure_optimizers())
        return type(built)(params, **built.defaults)

    return Workload(
        name=spec, model_factory=lambda: module_cls(lr=build_lr, momentum=build_momentum),
        train_data=data.train_dataloader().dataset, val_data=data.val_dataloader().dataset,
        loss_fn=F.cross_entropy, optimizer_factory=optimizer, reference=reference,
        description=f"Lightning {module_cls.__name__} on {data_cls.__name__}",
        trainer=LightningTrainer(module_cls, data_cls, metric))


def apply(result: RecipeSource, *, module: Any = None, datamodule: Any = None) -> Hyperparams:
    """Set a result's batch size on `datamodule` and its LR and momentum on `module`
    (attributes and saved hyperparameters, where they exist); returns the recipe.

    result: a best.json path, its loaded dict, or a TuneResult. For the recommended
    schedule, build the scheduler in configure_optimizers with autobatch.lr_scheduler.
    """
    _, recipe = load_recipe(result)
    for target, values in ((module, {"lr": recipe.lr, "momentum": recipe.momentum}),
                           (datamodule, {"batch_size": recipe.batch_size})):
        if target is None:
            continue
        saved = getattr(target, "hparams", None)
        for name, value in values.items():
            if isinstance(saved, dict) and name in saved:
                saved[name] = value
            if hasattr(target, name) or not isinstance(saved, dict) or name not in saved:
                setattr(target, name, value)
    return recipe
