"""Training: the one loop every stage shares, its run setup, its batches and its
checkpoints."""

from autobatch.train.checkpoint import Pause, Segment
from autobatch.train.data import (
    Batch,
    Inputs,
    TrainBatches,
    ValBatches,
    check_data,
    first_batch,
    input_size,
    logits_of,
    map_inputs,
)
from autobatch.train.loop import Clock, EvalCallback, EvalPoint, RunResult, StopReason, run
from autobatch.train.setup import (
    RunSetup,
    build_optimizer,
    evaluate,
    fresh_model,
    setup_run,
    train_batches,
    train_step,
    val_batches,
)

__all__ = [
    "Batch", "Clock", "EvalCallback", "EvalPoint", "Inputs", "Pause", "RunResult", "RunSetup",
    "Segment", "StopReason", "TrainBatches", "ValBatches", "build_optimizer", "check_data",
    "evaluate", "first_batch", "fresh_model", "input_size", "logits_of", "map_inputs", "run",
    "setup_run", "train_batches", "train_step", "val_batches",
]
