"""Hugging Face: a Trainer's model_init, datasets and compute_metrics as a workload.

`workload(...)` takes what Trainer.hyperparameter_search takes and returns a Workload
that a user's `module:function` entry point returns. Trials and `autobatch run` train
with transformers.Trainer (the user's TrainingArguments, with the recipe's batch size,
LR, Adam beta1 and seed): a callback keeps the training clock (evaluation excluded),
asks for an evaluation when autobatch's loop would, sets the recipe's LR schedule
before each step, hands every evaluation to the pruner and stops training when
pruned. The probe, the profile, the LR range test and the noise scale train the
model on the same dict-shaped batches (input_ids, attention_mask, ...; labels apart)
under cross-entropy with Adam.

"Momentum" is Adam's beta1 (`adam_beta1`); fix it with --momentum to leave it alone.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from autobatch.config import RunConfig
from autobatch.errors import WorkloadError
from autobatch.hyperparams import Hyperparams
from autobatch.integrations.extras import require
from autobatch.integrations.tracker import Tracker
from autobatch.recipe import RecipeSource, load_recipe, result_data
from autobatch.train import EvalCallback, RunResult
from autobatch.workloads import OPTIMIZERS, Workload

T = require("transformers", "transformers")

LABEL_KEYS = ("labels", "label")
# autobatch's schedules as Trainer's lr_scheduler_type (each with its linear warmup)
SCHEDULERS = {"constant": "constant_with_warmup", "cosine": "cosine", "linear": "linear",
              "wsd": "warmup_stable_decay"}


class Pairs(Dataset):
    """A dataset of dict samples as (inputs, label) pairs: the label key set apart."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        item = self.data[index]
        if not isinstance(item, Mapping):
            raise WorkloadError(f"dataset item {index} is a {type(item).__name__}, not a "
                                "dict of model inputs and labels")
        label = next((k for k in LABEL_KEYS if k in item), None)
        if label is None:
            raise WorkloadError(f"dataset item {index} has no 'labels' (its keys: "
                                f"{', '.join(item)})")
        inputs = {k: torch.as_tensor(v) for k, v in item.items() if k not in LABEL_KEYS}
        return inputs, torch.as_tensor(item[label])


class Inputs(nn.Module):
    """A model called with a dict of inputs as its keyword arguments."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: dict[str, torch.Tensor]) -> Any:
        return self.model(**inputs)


@dataclass(frozen=True)
class HFTrainer:
    """Workload.trainer for a Hugging Face model: trains with transformers.Trainer."""

    model_init: Callable[[], nn.Module]
    train_dataset: Any
    eval_dataset: Any
    compute_metrics: Callable[..., dict[str, float]] | None
    metric: str
    args: Any  # TrainingArguments
    data_collator: Callable[..., Any] | None

    def __call__(self, workload: Workload, config: RunConfig, device: torch.device,
                 on_eval: EvalCallback | None) -> RunResult:
        tracker = Tracker(workload, config, device, on_eval, metric=self.metric)
        with tempfile.TemporaryDirectory(prefix="autobatch-hf-") as out:
            args = dataclasses.replace(
                self.args, output_dir=out, per_device_train_batch_size=config.batch_size,
                gradient_accumulation_steps=1, learning_rate=config.lr,
                adam_beta1=config.momentum, seed=config.seed, use_cpu=device.type == "cpu",
                # the tracker ends the run and sets the LR per step; evaluations are asked
                # for by its callback, placed as autobatch's loop places them
                max_steps=10**9, lr_scheduler_type="constant", warmup_steps=0,
                eval_strategy="no", save_strategy="no", logging_strategy="steps",
                logging_steps=1, report_to="none", disable_tqdm=True)
            trainer = T.Trainer(
                model_init=self.model_init, args=args, train_dataset=self.train_dataset,
                eval_dataset=self.eval_dataset, compute_metrics=self.compute_metrics,
                data_collator=self.data_collator, callbacks=[Timing(tracker, config)])
            trainer.remove_callback(T.trainer_callback.PrinterCallback)  # a line per step
            trainer.train()
        return tracker.result()


class Timing(T.TrainerCallback):
    """The Trainer's side of the Tracker (see tracker.py)."""

    def __init__(self, tracker: Tracker, config: RunConfig) -> None:
        self.tracker, self.batch_size = tracker, config.batch_size

    def on_train_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None,
                       **kwargs: Any) -> None:
        self.tracker.start(optimizer)

    def on_step_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None,
                      **kwargs: Any) -> None:
        self.tracker.set_lr(optimizer)

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
               **kwargs: Any) -> None:
        if not logs or "loss" not in logs:  # evaluation and end-of-training logs
            return
        if self.tracker.stepped(self.batch_size, float(logs["loss"])):
            control.should_training_stop = True
        elif self.tracker.due():
            control.should_evaluate = True  # runs right after this log
            self.tracker.evaluating()

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None,
                    **kwargs: Any) -> None:
        if self.tracker.evaluated(metrics or {}):
            control.should_training_stop = True


def workload(*, model_init: Callable[[], nn.Module], train_dataset: Any, eval_dataset: Any,
             compute_metrics: Callable[..., dict[str, float]] | None = None,
             metric: str = "eval_accuracy", args: Any = None,
             data_collator: Callable[..., Any] | None = None,
             name: str = "transformers") -> Workload:
    """A Workload trained by transformers.Trainer: Trainer's own arguments, plus the
    metric to reach (a key of Trainer.evaluate()'s metrics, "eval_" + a key
    compute_metrics returns). args: TrainingArguments (default: Trainer's defaults);
    its batch size, LR and adam_beta1 are the reference recipe."""
    if args is None:
        args = T.TrainingArguments(output_dir=tempfile.gettempdir(), report_to="none")
    if not isinstance(args, T.TrainingArguments):
        raise WorkloadError(f"args must be a TrainingArguments, got {type(args).__name__}")
    return Workload(
        name=name, model_factory=lambda: Inputs(model_init()),
        train_data=Pairs(train_dataset), val_data=Pairs(eval_dataset), loss_fn=F.cross_entropy,
        optimizer_factory=OPTIMIZERS["adam"],
        reference=Hyperparams(batch_size=args.per_device_train_batch_size,
                              lr=args.learning_rate, momentum=args.adam_beta1),
        eval_batch_size=args.per_device_eval_batch_size,
        description=f"Hugging Face Trainer, metric {metric}",
        trainer=HFTrainer(model_init, train_dataset, eval_dataset, compute_metrics, metric,
                          args, data_collator))


def training_arguments(result: RecipeSource, base_args: Any) -> Any:
    """`base_args` (TrainingArguments) with a result's recipe: batch size (split over
    base_args' gradient accumulation when it divides it), learning rate, adam_beta1
    (the recipe's momentum), the warmup in steps and the schedule as lr_scheduler_type;
    a decaying schedule's horizon becomes max_steps.

    result: a best.json path, its loaded dict, or a TuneResult.
    """
    _, recipe = load_recipe(result)
    steps = result_data(result).get("schedule") or {}
    accumulation = base_args.gradient_accumulation_steps
    if recipe.batch_size % accumulation:
        accumulation = 1
    changes: dict[str, Any] = {
        "per_device_train_batch_size": recipe.batch_size // accumulation,
        "gradient_accumulation_steps": accumulation, "learning_rate": recipe.lr,
        "adam_beta1": recipe.momentum, "warmup_steps": steps.get("warmup_steps") or 0,
        "lr_scheduler_type": SCHEDULERS[recipe.schedule.name]}
    if recipe.schedule.name != "constant" and steps.get("horizon_steps"):
        changes["max_steps"] = steps["horizon_steps"]
    if recipe.schedule.name == "wsd" and steps.get("cooldown_steps"):
        changes["lr_scheduler_kwargs"] = {"num_decay_steps": steps["cooldown_steps"],
                                          "decay_type": "1-sqrt"}
    return dataclasses.replace(base_args, **changes)
