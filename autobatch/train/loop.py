"""The one training loop: train a configuration until target, budget or divergence.

Every later stage (probe, profiler, study trials) reuses it, so the time to target means
the same thing everywhere: seconds of training (data loading, forward, backward, optimizer
step; the device synchronised before each clock read), evaluation excluded and reported.

Evaluation is scheduled geometrically in training time: the next one runs once training
time has grown by `eval_resolution` (5%) since the last, so the reported time to target
overestimates the true crossing by at most that fraction plus one step, whatever the run
length, while the number of evaluations stays logarithmic.

A run can pause (`pause`: at a training time or step, with a checkpoint written, see
checkpoint.py) and resume from that checkpoint (`resume`); the resumed run continues the
same trace and counters, and trains as the uninterrupted run would have. A data-parallel
run's ranks (`ranks`, autobatch.train.distributed) each train their share of every step.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

import autobatch.train.checkpoint as checkpoint
from autobatch.config import RunConfig
from autobatch.device import reset_peak_memory, resolve_device, synchronize
from autobatch.errors import ConfigError
from autobatch.schedule import CONSTANT, Schedule, steps_per_epoch
from autobatch.train.checkpoint import Pause
from autobatch.train.data import check_data
from autobatch.train.distributed import SOLO, Solo
from autobatch.train.precision import check_precision, is_divergence
from autobatch.train.run_result import EvalPoint, RunResult, StopReason, run_result
from autobatch.train.setup import set_lr, setup_run, timed_evaluate, train_batches, val_batches
from autobatch.workloads import Workload

log = logging.getLogger(__name__)

Clock = Callable[[], float]
# The first evaluation waits for at least this much training (seconds), so the
# slow first steps at a new shape do not trigger a burst of evaluations.
FIRST_EVAL_S = 0.02
# Evaluation may cost at most this fraction of training time: after an evaluation
# that took e seconds, the next waits for at least e / EVAL_SHARE of training.
EVAL_SHARE = 0.25


# Called after every evaluation; True stops the run (stop_reason 'stopped').
EvalCallback = Callable[[EvalPoint], bool | None]


@dataclass
class Progress:
    """The loop's own counters: what a paused run needs beyond the model, the optimizer,
    the batch stream and the random generators. trained: seconds of training so far;
    loss_sum/loss_count: the training loss since the last evaluation (scaler-skipped
    steps left out); skips_in_row: fp16 steps the gradient scaler skipped in a row."""

    lr: float
    next_eval: float
    steps: int = 0
    samples: int = 0
    trained: float = 0.0
    eval_total: float = 0.0
    loss_sum: float = 0.0
    loss_count: int = 0
    skips_in_row: int = 0
    trace: list[EvalPoint] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Progress:
        return cls(**{**data, "trace": [EvalPoint(**point) for point in data["trace"]]})


def run_schedule(workload: Workload, config: RunConfig) -> Schedule:
    """config.schedule in optimizer steps; a budget in steps or epochs is its default
    horizon and its limit (see Schedule.resolve)."""
    n_train = len(workload.train_data)
    budget = config.budget
    budget_steps = (budget.steps if budget.steps is not None else
                    math.ceil(budget.epochs * n_train / config.batch_size) if budget.epochs
                    else None)
    return config.schedule.resolve(steps_per_epoch(n_train, config.batch_size), budget_steps)


def next_eval_at(trained: float, eval_seconds: float, config: RunConfig) -> float:
    """Training time of the next evaluation: geometric, and never costlier than EVAL_SHARE.

    Without a target, intermediate evaluations decide nothing: only the final one runs.
    """
    if config.target is None:
        return math.inf
    return max(trained * (1.0 + config.eval_resolution), trained + eval_seconds / EVAL_SHARE)


def run(workload: Workload, config: RunConfig, *, device: str | torch.device = "auto",
        on_eval: EvalCallback | None = None, clock: Clock = time.perf_counter,
        pause: Pause | None = None, resume: str | Path | None = None,
        keep_model: str | Path | None = None, ranks: Solo = SOLO) -> RunResult:
    """Train `workload` with `config` from a fresh model, or from the checkpoint at
    `resume`; return the result and trace (a resumed run's: the whole run's so far).

    Before every optimizer step each parameter group's LR is set to its initial LR (the
    peak) times config.schedule's multiplier at that step; a decaying schedule's run
    ends at its horizon (stop_reason 'budget' unless the target came first).
    on_eval is called after every evaluation; returning True stops the run with
    stop_reason 'stopped' (the study's pruner uses this). At `pause` the run writes its
    checkpoint and returns with stop_reason 'paused'; at the target it saves the model
    to `keep_model` (checkpoint.save_model). A checkpoint that is torn, corrupt or of
    another run raises CheckpointError before any setup, as do a precision the device
    cannot train in and channels-last on inputs that are not 4-D (ConfigError). An
    fp16 step the gradient scaler skips (overflow) is not divergence (see
    train.precision.is_divergence). The peak memory is that of this call's part of the
    run. A workload with a trainer of its own (a framework's,
    see autobatch.integrations) is trained by it instead (no pause or resume there).
    """
    ranks.check_pause(pause is not None or resume is not None)
    schedule = run_schedule(workload, config)  # bad spans fail before any setup
    who = checkpoint.identity(workload.name, config, config.seed)
    saved = checkpoint.load(resume) if resume is not None else None
    if saved is not None:
        checkpoint.check_identity(saved["identity"], who, resume)
    dev = resolve_device(device)
    check_precision(workload, config.precision, config.channels_last, dev)
    if workload.trainer is not None:
        if config.numerics():  # the framework's trainer has its own settings for these
            raise ConfigError(f"workload {workload.name!r} trains with its framework's own "
                              f"trainer: set {', '.join(config.numerics())} there")
        return workload.trainer(workload, config, dev, on_eval)
    setup = setup_run(workload, config, dev, seed=config.seed)
    model, optimizer, policy = setup.model, setup.optimizer, setup.policy
    stepped = replace(setup, model=ranks.wrap(model))
    check_data(workload, config.batch_size, model, dev)
    train = train_batches(workload, config.batch_size, dev, seed=config.seed)
    val = val_batches(workload, dev)
    max_steps, max_seconds, max_samples = run_limits(workload, config, schedule)
    peaks = [group["lr"] for group in optimizer.param_groups]  # before a checkpoint's LRs
    scheduled = schedule != CONSTANT

    if saved is None:
        p = Progress(lr=peaks[0], next_eval=FIRST_EVAL_S if config.target is not None
                     else math.inf)
    else:
        p = Progress.from_dict(saved["loop"])
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        train.load_state(saved["batches"])
        checkpoint.restore_rng(saved["rng"], dev)
        policy.load_state(saved.get("scaler"))
    stop: StopReason | None = None
    hit: EvalPoint | None = None
    skips = 0

    synchronize(dev)
    reset_peak_memory(dev)
    started = clock()
    for x, y in ranks.shard(train):
        if scheduled:
            multiplier = schedule.lr_at(p.steps)
            set_lr(optimizer, peaks, multiplier)
            p.lr = peaks[0] * multiplier
        scale = policy.scale()
        # .item() also synchronises the device before the clock is read
        loss_value, elapsed = ranks.agree_step(
            functools.partial(stepped.step, workload, x, y), clock, p.trained - started)
        skipped = policy.skipped(scale)
        p.skips_in_row = p.skips_in_row + 1 if skipped else 0
        skips += skipped
        p.steps += 1
        p.samples += len(y) * ranks.world_size
        if is_divergence(loss_value, p.skips_in_row):
            p.trained, stop = elapsed, "diverged"
            log.info("loss is %s at step %d (%d steps skipped in a row): diverged",
                     loss_value, p.steps, p.skips_in_row)
            break
        if not skipped:
            p.loss_sum += loss_value
            p.loss_count += 1
        out_of_budget = (p.steps >= max_steps or elapsed >= max_seconds
                         or p.samples >= max_samples)
        if elapsed >= p.next_eval or out_of_budget:
            p.trained = elapsed
            metric, eval_seconds = ranks.on_rank0(
                lambda: timed_evaluate(model, workload, val, dev, clock, policy))
            p.eval_total += eval_seconds
            point = EvalPoint(train_seconds=p.trained, steps=p.steps, samples=p.samples,
                              epochs=p.samples / len(workload.train_data),
                              train_loss=p.loss_sum / p.loss_count if p.loss_count
                              else math.nan, metric=metric,
                              eval_seconds=eval_seconds, lr=p.lr)
            p.trace.append(point)
            p.loss_sum, p.loss_count = 0.0, 0
            if config.target is not None and metric >= config.target:
                hit, stop = point, "target"
                if keep_model is not None:
                    checkpoint.save_model(keep_model, model, {
                        "workload": workload.name, "recipe": config.hparams.to_dict(),
                        "seed": config.seed, "metric": metric, "time_to_target_s": p.trained})
                break
            if out_of_budget:
                stop = "budget"
                break
            if ranks.decide(on_eval is not None and bool(on_eval(point))):
                stop = "stopped"
                break
            p.next_eval = next_eval_at(p.trained, eval_seconds, config)
            synchronize(dev)
            started = clock()
        if pause is not None and pause.due(p.steps, elapsed):
            p.trained, stop = elapsed, "paused"
            checkpoint.save(pause.path, {
                "identity": who, "loop": p.to_dict(), "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "batches": train.state(),
                "rng": checkpoint.rng_state(dev), "scaler": policy.state()})
            break

    return run_result(workload, dev, config, p.trace, hit, steps=p.steps, samples=p.samples,
                      trained=p.trained, eval_total=p.eval_total, stop=stop, schedule=schedule,
                      checkpoint=str(pause.path) if stop == "paused" else None,
                      skipped_steps=skips)


def run_limits(workload: Workload, config: RunConfig,
               schedule: Schedule) -> tuple[float, float, float]:
    """(max steps, max training seconds, max samples) of a run: its budget and its
    schedule's horizon; inf where unbounded."""
    budget = config.budget
    max_steps = budget.steps if budget.steps is not None else math.inf
    max_steps = min(max_steps, schedule.horizon_steps or math.inf)
    max_seconds = budget.seconds if budget.seconds is not None else math.inf
    max_samples = budget.epochs * len(workload.train_data) if budget.epochs else math.inf
    return max_steps, max_seconds, max_samples
