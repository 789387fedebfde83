"""`autobatch worker`: join a study set up by `autobatch tune` and run its trials."""

from __future__ import annotations

import math
import os
import time
from typing import Annotated, Optional

import optuna
import typer

import autobatch.stop as stop
from autobatch.events import trial_line
from autobatch.search import work
from autobatch.storage import ENV_STORAGE, default_storage_url
from autobatch_cli import STARTED
from autobatch_cli.options import NprocOpt, ranks_for
from autobatch_cli.output import exits_cleanly, stderr


@exits_cleanly
def worker(
    study_name: Annotated[str, typer.Option(help="The study to join.")],
    storage: Annotated[Optional[str], typer.Option(
        help=f"Storage URL (default ${ENV_STORAGE}; prefer the variable: it keeps a "
             "password out of the process list).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    nproc_per_trial: NprocOpt = None,
    checkpoint_dir: Annotated[Optional[str], typer.Option(help=(
        "Where this machine sees the study's checkpoint folder (default: the path the "
        "study was set up with)."))] = None,
    deadline: Annotated[float, typer.Option(hidden=True, help=(
        "Stop starting trials at this time (epoch seconds): how `tune --workers N` "
        "shares its --timeout."))] = math.inf,
    verify_from: Annotated[float, typer.Option(hidden=True, help=(
        "Once a trial has reached the target, start no trial after this time (epoch "
        "seconds): the rest is `tune --workers N`'s for re-measuring."))] = math.inf,
    started: Annotated[Optional[float], typer.Option(hidden=True, help=(
        "The clock its lines count from (epoch seconds): `tune --workers N` passes its "
        "own, so their lines share one clock. Default: this process's start."))] = None,
    parent: Annotated[Optional[int], typer.Option(hidden=True, help=(
        "End when this process ends: `tune --workers N` passes its own pid."))] = None,
) -> None:
    """Run trials of an existing study until its trial budget is used up."""
    if nproc_per_trial is not None:  # else the study's
        ranks_for(device, nproc_per_trial)
    if parent is not None:
        stop.end_with_parent(parent)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    since = started or STARTED

    def say(line: str) -> None:
        stderr.print(f"[{time.time() - since:7.1f}s] {line}", markup=False)

    def show(_: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        say(f"{trial_line(trial)}  (worker {os.getpid()})")

    why = work(storage or default_storage_url(), study_name, device=device, deadline=deadline,
               verify_from=verify_from, on_trial=show, checkpoint_dir=checkpoint_dir,
               nproc_per_trial=nproc_per_trial)
    say(f"worker {os.getpid()} stopped: {why}")
