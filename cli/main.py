"""`autobatch` console script: one command per stage."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

import autobatch.stop as stop
from autobatch.config import Budget, RunConfig
from autobatch.device import resolve_device
from autobatch.errors import ConfigError
from autobatch.hyperparams import Hyperparams
from autobatch.recipe import load_recipe
from autobatch.schedule import Schedule, parse_share, parse_span
from autobatch.search import runner_for
from autobatch.train import EvalPoint, RunResult
from autobatch.train import run as run_training
from autobatch.workloads import BUILTINS, KINDS, ScriptWorkload, Workload
from autobatch_cli.options import (
    ChannelsLastOpt,
    CommandArg,
    DeviceOpt,
    GradAccumOpt,
    JsonOpt,
    NprocOpt,
    PrecisionOpt,
    SeedOpt,
    WorkloadOptions,
    numerics,
    ranks_for,
    script_workload,
    with_workload_options,
    workload_from,
)
from autobatch_cli.output import (
    configure_logging,
    exits_cleanly,
    print_json,
    stderr,
    stdout,
)

DEFAULT_BUDGET = "60s"

app = typer.Typer(
    name="autobatch", no_args_is_help=True, add_completion=False,
    help="Find the batch size, learning rate and momentum that reach a target accuracy "
         "fastest on this hardware.")


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log to stderr.")] = False,
         ) -> None:
    configure_logging(verbose)
    if stop.requested():  # a stop signal while the library was imported: nothing started
        stderr.print("stopped before starting", markup=False)
        raise typer.Exit(stop.exit_code())


@app.command()
def workloads(json_output: JsonOpt = False) -> None:
    """List the built-in workloads, each with its reference recipe and a suggested
    target, and the other kinds of workload names."""
    if json_output:
        print_json([{"name": name, "description": builtin.description,
                     "reference": builtin.reference.to_dict(), "target": builtin.target}
                    for name, builtin in BUILTINS.items()])
        return
    for kind in KINDS:
        for name, description in kind.entries:
            # plain text: a name such as lightning:M:C is no emoji code nor markup
            stdout.print(f"{name:<14} {description}", emoji=False, markup=False)
            if name in BUILTINS:
                builtin = BUILTINS[name]
                stdout.print(f"{'':<14} reference: {recipe_words(builtin.reference)}; "
                             f"suggested target {builtin.target:g}", markup=False)


def recipe_words(recipe: Hyperparams) -> str:
    return ", ".join([f"batch {recipe.batch_size}", f"lr {recipe.lr:g}",
                      f"momentum {recipe.momentum:g}",
                      f"optimizer {recipe.optimizer or 'default'}",
                      f"schedule {recipe.schedule}", *recipe.numerics()])


@app.command()
@with_workload_options
@exits_cleanly
def run(
    workload: Annotated[Optional[str], typer.Option(
        "--workload", "-w", help="Built-in name, torchvision:MODEL, module:function, or "
        "script:COMMAND.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(
        help="Samples per optimizer step. Default: the workload's reference recipe.")] = None,
    lr: Annotated[Optional[float], typer.Option(
        help="Learning rate. Default: the reference recipe's LR and optimizer.")] = None,
    momentum: Annotated[Optional[float], typer.Option(
        help="Momentum in [0, 1) (Adam: beta1). Default 0.9.")] = None,
    target: Annotated[Optional[float], typer.Option(
        help="Validation metric to reach, in (0, 1]; omit to train the whole budget.")] = None,
    budget: Annotated[Optional[str], typer.Option(
        help="Training budget: 60s, 10m, 2000steps or 5epochs. Default: a decaying "
             "schedule's horizon, else 60s.")] = None,
    optimizer: Annotated[Optional[str], typer.Option(
        help="sgd or adam. Default: the workload's own optimizer.")] = None,
    schedule: Annotated[Optional[str], typer.Option(
        help="LR schedule: constant, cosine, linear or wsd (the LR is its peak).")] = None,
    warmup: Annotated[Optional[str], typer.Option(
        help="Linear warmup: 5% (of the horizon), 200steps or 1epochs.")] = None,
    horizon: Annotated[Optional[str], typer.Option(
        help="Where cosine/linear/wsd reach ~0: 40epochs or 2000steps. Default: the budget "
             "(in steps or epochs).")] = None,
    cooldown: Annotated[Optional[str], typer.Option(
        help="wsd: share of the horizon spent cooling down, in (0, 1): 20% or 0.2.")] = None,
    grad_accum: GradAccumOpt = None,
    precision: PrecisionOpt = None,
    channels_last: ChannelsLastOpt = False,
    recipe: Annotated[Optional[Path], typer.Option(
        help="Train the recipe in this result file (autobatch tune --output best.json); "
             "the options above override its fields.")] = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    nproc_per_trial: NprocOpt = None,
    json_output: JsonOpt = False,
    command: CommandArg = None,
    workload_options: WorkloadOptions | None = None,
) -> None:
    """Train one configuration until the target, the budget, or divergence."""
    dev = resolve_device(device)
    parsed_budget = Budget.parse(budget) if budget is not None else None
    name = script_workload(workload, command)
    if name is None:
        raise ConfigError("--workload is required (or a script command after `--`)")
    wl = workload_from(name, workload_options)
    given = {"batch_size": batch_size, "lr": lr, "momentum": momentum, "optimizer": optimizer}
    shape = {"name": schedule, "warmup": warmup, "horizon": horizon,
             "cooldown": parse_share("cooldown", cooldown) if cooldown is not None else None}
    hparams = recipe_of(wl, recipe, given, shape)
    # a recipe tuned on N ranks trains on N unless told otherwise
    nproc = ranks_for(device, hparams.world_size if nproc_per_trial is None else nproc_per_trial)
    hparams = replace(hparams, **numerics(grad_accum, precision, channels_last),
                      world_size=nproc)
    if parsed_budget is None:
        parsed_budget = default_budget(hparams.schedule)
    config = RunConfig.of(hparams, target=target, budget=parsed_budget, seed=seed)
    if recipe is None and batch_size is None and lr is None:
        stderr.print(f"no --batch-size, --lr or --recipe: training {wl.name}'s reference "
                     "recipe", markup=False)
    stderr.print(f"training {wl.name}: {recipe_words(config)}, "
                 f"target {target if target is not None else '-'}, budget {config.budget}",
                 markup=False)
    with stderr.status("training ...") as status:
        def show(point: EvalPoint) -> None:
            status.update(f"{point.train_seconds:7.2f}s  step {point.steps}  "
                          f"metric {point.metric:.4f}")

        result = (runner_for(wl, dev, nproc).run(config, show)
                  if isinstance(wl, ScriptWorkload) or nproc > 1
                  else run_training(wl, config, device=dev, on_eval=show))
    if json_output:
        print_json(result.to_dict())
    else:
        stdout.print(run_table(result))


def default_budget(schedule: Schedule) -> Budget:
    """A decaying schedule's horizon (a recipe such as mnist1d-long's reference trains to
    the end of its decay), else DEFAULT_BUDGET."""
    if not (schedule.decays and schedule.horizon):
        return Budget.parse(DEFAULT_BUDGET)
    num, unit = parse_span("horizon", schedule.horizon, ("steps", "epochs"))
    return Budget(steps=int(num)) if unit == "steps" else Budget(epochs=num)


def recipe_of(wl: Workload | ScriptWorkload, path: Path | None, given: dict[str, Any],
              shape: dict[str, Any]) -> Hyperparams:
    """The recipe to train: the result file's (or the workload's reference) with the
    options given over it, and their schedule fields over its schedule."""
    if path is None and isinstance(wl, ScriptWorkload):
        if given["batch_size"] is None or given["lr"] is None:
            raise ConfigError("a script has no reference recipe: give --batch-size and --lr "
                              "(or --recipe best.json)")
        base = Hyperparams(**{**given, "momentum": given["momentum"] or 0.9})
    elif path is None:
        base = wl.recipe(**given)
    else:
        name, base = load_recipe(path)
        if name is not None and name != wl.name:
            raise ConfigError(f"recipe file {str(path)!r} is for workload {name!r}, not "
                              f"{wl.name!r}")
        base = replace(base, **{k: v for k, v in given.items() if v is not None})
    shape = {k: v for k, v in shape.items() if v is not None}
    return replace(base, schedule=replace(base.schedule, **shape)) if shape else base


def run_table(result: RunResult) -> Table:
    table = Table(title=f"{result.workload} on {result.device}", show_header=False)
    reached = result.target_reached
    rows = [
        ("target reached", "yes" if reached else "no"),
        ("time to target", f"{result.time_to_target_s:.3f} s" if reached else "-"),
        ("steps to target", str(result.steps_to_target) if reached else "-"),
        ("stop reason", result.stop_reason),
        ("schedule", str(result.schedule)),
        ("recipe", result.config.summary()),
        ("steps / samples / epochs",
         f"{result.steps} / {result.samples} / {result.epochs:.2f}"),
        ("training time", f"{result.train_seconds:.3f} s"),
        ("eval overhead", f"{result.eval_seconds:.3f} s ({len(result.trace)} evaluations)"),
        ("samples/s", f"{result.samples_per_s:,.0f}"),
        ("best metric", f"{result.best_metric:.4f}" if result.best_metric is not None else "-"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table

from autobatch_cli.profile import profile  # noqa: E402

app.command()(profile)

from autobatch_cli.probe import probe  # noqa: E402

app.command()(probe)

from autobatch_cli.tune import tune  # noqa: E402

app.command()(tune)

from autobatch_cli.worker import worker  # noqa: E402

app.command()(worker)

from autobatch_cli.dashboard import dashboard  # noqa: E402

app.command()(dashboard)

from autobatch_cli.report import report  # noqa: E402

app.command()(report)
