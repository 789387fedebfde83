"""`autobatch tune`: probe -> profile -> study -> verified recommendation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import optuna
import typer
from rich.table import Table

from autobatch.config import TuneConfig
from autobatch.device import resolve_device
from autobatch.errors import ConfigError
from autobatch.events import TuneEvent
from autobatch.memory_size import bytes_in_words
from autobatch.prepare import prepare
from autobatch.report import publish
from autobatch.result import TuneResult, check_format
from autobatch.storage import default_storage_url, mask_url, open_storage
from autobatch.studyfile import TuneOptions
from autobatch.tuner import tune as run_tune
from autobatch_cli import STARTED
from autobatch_cli.options import (
    CommandArg,
    GradAccumOpt,
    NprocOpt,
    WorkloadOptions,
    script_workload,
    with_workload_options,
    workload_from,
)
from autobatch_cli.output import (
    exits_cleanly,
    stderr,
    stdout,
)
from autobatch_cli.progress import Progress

Opt = typer.Option


@with_workload_options
@exits_cleanly
def tune(
    workload: Annotated[Optional[str], Opt("--workload", "-w", help=(
        "Built-in name, torchvision:MODEL, module:function, or script:COMMAND."))] = None,
    target: Annotated[Optional[float], Opt(help="Validation metric to reach, in (0, 1].")] = None,
    n_trials: Annotated[Optional[int], Opt(help=(
        "Trials in the study in total (a rerun completes the rest). Default 40, or as "
        "many as fit in --timeout."))] = None,
    patience: Annotated[Optional[int], Opt(help=(
        "Stop once N finished trials in a row did not cut the best time to target by 5% "
        "(default 12; 0: never)."))] = None,
    timeout: Annotated[Optional[str], Opt(help="Wall-clock limit for the whole tune: 120, 10m.")]
    = None,
    trial_budget: Annotated[Optional[str], Opt(help=(
        "Most training time per trial (default 60s, or 15% of --timeout)."))] = None,
    storage: Annotated[Optional[str], Opt(help=(
        "Optuna storage URL (default $AUTOBATCH_STORAGE or sqlite:///autobatch.db)."))] = None,
    study_name: Annotated[Optional[str], Opt(help="Default: WORKLOAD-targetT.")] = None,
    new_study: Annotated[bool, Opt(help="Start a new study instead of resuming.")] = False,
    output: Annotated[Optional[Path], Opt(help="Write the recommendation to this file.")] = None,
    artifact_dir: Annotated[Optional[str], Opt("--artifacts", help=(
        "Folder for the dashboard's artifacts (profile.png, probe.json, best.json); "
        "default: beside a SQLite database, none for a server."))] = None,
    format: Annotated[Optional[str], Opt(help=(
        "json, yaml or env: print the recommendation in this format on stdout (and use it "
        "for --output)."))] = None,
    config: Annotated[Optional[Path], Opt(help="A study file (TOML) with these options.")] = None,
    batch_size: Annotated[Optional[int], Opt(help="Fix the batch size.")] = None,
    min_batch: Annotated[Optional[int], Opt(help="Smallest batch to consider.")] = None,
    max_batch: Annotated[Optional[int], Opt(help="Largest batch to consider.")] = None,
    lr: Annotated[Optional[float], Opt(help="Fix the learning rate.")] = None,
    lr_range: Annotated[Optional[str], Opt(help=(
        "LR bounds LOW:HIGH at the anchor batch with momentum 0.9 (default: LR range "
        "test)."))] = None,
    momentum: Annotated[Optional[float], Opt(help="Fix the momentum.")] = None,
    momentum_range: Annotated[Optional[str], Opt(help="Momentum bounds LOW:HIGH.")] = None,
    optimizer: Annotated[Optional[str], Opt(help="sgd or adam (default: the workload's).")]
    = None,
    schedule: Annotated[Optional[str], Opt(help=(
        "LR schedule: auto (search the shapes, warmups and horizons), constant, cosine, "
        "linear or wsd."))] = None,
    grad_accum: GradAccumOpt = None,
    precision: Annotated[Optional[str], Opt(help=(
        "fp32, bf16, fp16 (CUDA only), or auto: profile each and train in the one of least "
        "time per sample."))] = None,
    channels_last: Annotated[Optional[bool], Opt(
        "--channels-last", help="The model and its 4-D inputs in channels-last memory "
        "format.")] = None,
    verify: Annotated[Optional[int], Opt(help="Re-measure the best N configurations.")] = None,
    verify_runs: Annotated[Optional[int], Opt(help=(
        "Fresh-seed runs of each before the race may drop one (default 3)."))] = None,
    verify_max_runs: Annotated[Optional[int], Opt(help=(
        "Most rounds of the race, for close calls (default 3x --verify-runs)."))] = None,
    time_mode: Annotated[Optional[str], Opt("--time", help=(
        "measured (wall-clock) or modeled (steps x profiled step time: for shared "
        "hardware)."))] = None,
    headroom: Annotated[Optional[float], Opt(help="Memory left free by the probe.")] = None,
    memory_limit: Annotated[Optional[str], Opt(help="Memory limit: 4GiB.")] = None,
    workers: Annotated[Optional[int], Opt(help=(
        "Trial processes on this machine (0: set the study up for `autobatch worker`s; "
        "> 1 needs PostgreSQL or a journal file)."))] = None,
    devices: Annotated[Optional[str], Opt(help=(
        "CUDA devices, one trial each (--nproc-per-trial each): 0,1,2,3 (implies --workers "
        "4, or 4 / N)."))] = None,
    nproc_per_trial: NprocOpt = None,
    compare: Annotated[Optional[bool], Opt("--compare/--no-compare", help=(
        "Re-measure the reference recipe and largest-batch rule beside the result."))] = None,
    use_cache: Annotated[Optional[bool], Opt("--cache/--no-cache", help=(
        "Reuse cached probe and profile results of this workload and device."))] = None,
    profile: Annotated[Optional[Path], Opt(help=(
        "Use this saved profile (`autobatch profile --json` or --save) instead of "
        "profiling."))] = None,
    device: Annotated[Optional[str], Opt(help="auto, cpu, cuda or cuda:N.")] = None,
    seed: Annotated[Optional[int], Opt(help="Sampler and training seed.")] = None,
    rungs: Annotated[Optional[str], Opt(help=(
        "on: pause trials at rungs of training time and resume only the promising ones "
        "from their checkpoints; off: train each straight through; auto (default): on "
        "when the trial budget is long enough."))] = None,
    checkpoint_dir: Annotated[Optional[str], Opt(help=(
        "Folder for paused trials' checkpoints, shared by every worker (default: beside a "
        "SQLite database; required for a server)."))] = None,
    keep_model: Annotated[Optional[Path], Opt(help=(
        "Save the model of the fastest trial to reach the target (at that moment, with "
        "its recipe) to this file."))] = None,
    command: CommandArg = None,
    workload_options: WorkloadOptions | None = None,
) -> None:
    """Find the batch size, LR and momentum that reach --target fastest."""
    given = TuneOptions(
        workload=script_workload(workload, command), device=device, target=target,
        n_trials=n_trials, patience=patience,
        timeout=timeout, trial_budget=trial_budget, storage=storage, study_name=study_name,
        new_study=new_study, output=str(output) if output else None, format=format,
        artifact_dir=artifact_dir, batch_size=batch_size, min_batch=min_batch,
        max_batch=max_batch, lr=lr, lr_range=lr_range, momentum=momentum,
        momentum_range=momentum_range, optimizer=optimizer, schedule=schedule,
        grad_accum=grad_accum, precision=precision, channels_last=channels_last, verify=verify,
        verify_runs=verify_runs, verify_max_runs=verify_max_runs,
        time=time_mode,
        headroom=headroom, memory_limit=memory_limit, workers=workers, devices=devices,
        nproc_per_trial=nproc_per_trial,
        compare=compare, use_cache=use_cache, profile=str(profile) if profile else None,
        seed=seed, rungs=rungs, checkpoint_dir=checkpoint_dir,
        keep_model=str(keep_model) if keep_model else None,
        workload_options=workload_options or {})
    options = given.over(TuneOptions.from_file(config)) if config else given
    fmt = options.format
    if fmt is not None:
        check_format("--format", fmt)
    if not options.workload:
        raise ConfigError("--workload is required (or workload = ... in --config)")
    tune_cfg = options.tune_config()
    if isinstance(options.memory_limit, str):
        stderr.print(f"memory limit {bytes_in_words(options.memory_limit)}", markup=False)
    wl = workload_from(options.workload, options.workload_options)
    out_path = Path(options.output) if options.output else None
    for flag, path in (("--output", out_path), ("--keep-model", options.keep_model)):
        if path is not None and not Path(path).parent.is_dir():
            raise ConfigError(f"{flag} folder {str(Path(path).parent)!r} does not exist")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own progress replaces it
    device = resolve_device(options.device or "auto")
    if tune_cfg.workers == 0:
        with Progress() as progress:
            prepared = prepare(wl, tune_cfg, device, progress)
        stdout.print(f"study {prepared.study.study_name!r} in {mask_url(prepared.storage_url)} "
                     "is ready; join it from any machine with: autobatch worker "
                     f"--storage URL --study-name {prepared.study.study_name}")
        return
    with Progress(tune_cfg.timeout_s, STARTED) as progress:
        result = run_tune(wl, tune_cfg, device=device, on_event=progress, started=STARTED)
        publish_quietly(result, tune_cfg, progress)
    # shown before the file is written: a path that fails then loses nothing on screen
    table = closing_table(result)
    if fmt:
        stderr.print(table)
        stdout.file.write(result.render(fmt))
        stdout.file.flush()
    else:
        stdout.print(table)
    if out_path is not None:
        result.write(out_path, fmt or "json")
        stderr.print(f"recommendation written to {out_path}")


def publish_quietly(result: TuneResult, config: TuneConfig, progress: Progress) -> None:
    """The note, result and artifacts for the dashboard; a presentation problem must
    not discard a finished tune, so it is a warning."""
    url = config.storage or default_storage_url()
    try:
        study = optuna.load_study(study_name=result.study.name, storage=open_storage(url))
        folder = publish(study, result, config.artifact_dir)
    except Exception as exc:
        progress(TuneEvent("stage", "warning", f"could not publish the study note and "
                                               f"artifacts: {exc}"))
    else:
        if folder is not None:
            progress(TuneEvent("stage", "dashboard", f"artifacts in {folder}"))


def closing_table(result: TuneResult) -> Table:
    """Each configuration on one line in 80 columns: only the schedule wraps (at its
    commas); the other columns keep their width (short headers: "mom." is the momentum,
    "median" the median time to target over the runs)."""
    data = result.to_dict()
    table = Table(title=f"{result.workload}: time to {result.target:g} on {result.device}",
                  pad_edge=False)
    for column in ("configuration", "batch", "LR", "mom.", "schedule", "median", "reached"):
        wraps = column == "schedule"
        table.add_column(column, no_wrap=not wraps, min_width=8 if wraps else None)
    for cand in result.candidates:
        median = cand.median()
        mark = " *" if cand is result.best else ""
        hp = cand.hparams
        table.add_row(f"{cand.name}{mark}", str(hp.batch_size), f"{hp.lr:.3g}",
                      f"{hp.momentum:.3g}", str(hp.schedule), f"{median:.3f}s" if median else "-",
                      f"{cand.reached()}/{len(cand.runs)}")
    table.caption = (f"* recommended: batch {data['batch_size']}, lr {data['lr']:.4g}, "
                     f"momentum {data['momentum']:.4g}, schedule {result.best.hparams.schedule}"
                     + "".join(f", {part}" for part in result.best.hparams.numerics())
                     + f"; study {data['study']['name']!r} in "
                     f"{data['study']['storage']}; tuning took {data['tuning_seconds']:.0f}s"
                     + (f" = {data['break_even']:.1f} reference runs (break-even)"
                        if data["break_even"] else "")
                     + (f"; the first model at the target after {data['first_model_s']:.0f}s"
                        + (f" = {data['first_model_break_even']:.2f} reference runs"
                           if data["first_model_break_even"] else "")
                        if data["first_model_s"] is not None else "")
                     + f"\nverdict: {data['verdict']}: {data['verdict_reason']}")
    return table
