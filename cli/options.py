"""Options shared by several commands, declared once."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any, Optional

import typer

from autobatch.device import resolve_device
from autobatch.errors import ConfigError
from autobatch.hyperparams import (
    AUTO,
    PRECISION_CHOICES,
    PRECISIONS,
    check_precision_choice,
    parse_grad_accum,
)
from autobatch.search.parallel_runner import check_nproc
from autobatch.workloads import Workload, all_options, load_workload, script_spec

WorkloadOpt = Annotated[str, typer.Option(
    "--workload", "-w",
    help="Built-in name (see `autobatch workloads`), torchvision:MODEL, or module:function.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
SeedOpt = Annotated[int, typer.Option(help="Seed for model initialisation and shuffling.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print strict JSON on stdout.")]
GradAccumOpt = Annotated[Optional[str], typer.Option(
    "--grad-accum", help="Micro-batches accumulated per optimizer step (the batch is the "
    "global batch): N >= 1, or auto (tune: each trial the smallest that makes its "
    "micro-batch fit the probe's).")]
PrecisionOpt = Annotated[Optional[str], typer.Option(
    help="fp32, bf16 (autocast) or fp16 (autocast and a gradient scaler; CUDA only); "
         "tune also takes auto.")]
ChannelsLastOpt = Annotated[bool, typer.Option(
    "--channels-last", help="The model and its 4-D inputs in channels-last memory format.")]
NprocOpt = Annotated[Optional[int], typer.Option("--nproc-per-trial", help=(
    "Processes (ranks) per run, default 1: a torch.distributed job on this machine, gloo "
    "on CPU, NCCL on CUDA with one visible device per rank. Batch sizes are global."),
    show_default=False)]
WorkloadOptions = dict[str, Any]
CommandArg = Annotated[Optional[list[str]], typer.Argument(help=(
    "Your training script, after `--`, instead of --workload: it runs once per trial and "
    "reports through autobatch.trial()."), show_default=False)]


def with_workload_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command every workload kind's options (autobatch.workloads.kinds declares
    them); it receives them, None where not given, as `workload_options`."""
    options = all_options()
    signature = inspect.signature(command, eval_str=True)
    params = [p for name, p in signature.parameters.items() if name != "workload_options"]
    params += [inspect.Parameter(
        o.name, inspect.Parameter.KEYWORD_ONLY, default=None,
        annotation=Annotated[Optional[o.type], typer.Option(help=o.help)]) for o in options]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        given = {o.name: kwargs.pop(o.name) for o in options}
        return command(**kwargs, workload_options=given)

    wrapper.__signature__ = signature.replace(parameters=params)  # what typer reads
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    del wrapper.__wrapped__  # inspect would otherwise show the command's own signature
    return wrapper


def numerics(grad_accum: str | None, precision: str | None, channels_last: bool, *,
             auto: bool = False) -> dict[str, Any]:
    """The given --grad-accum, --precision and --channels-last as Hyperparams fields
    (only those given); auto: whether 'auto' is meaningful for this command."""
    given: dict[str, Any] = {}
    if grad_accum is not None:
        given["grad_accum"] = parse_grad_accum(grad_accum)
    if precision is not None:
        check_precision_choice("--precision", precision,
                               PRECISION_CHOICES if auto else PRECISIONS)
        given["precision"] = precision
    if given.get("grad_accum") == AUTO and not auto:
        raise ConfigError("--grad-accum auto chooses per trial in `autobatch tune`; give a "
                          "number here")
    return given | ({"channels_last": True} if channels_last else {})


def workload_from(workload: str, options: WorkloadOptions) -> Workload:
    return load_workload(workload, **options)


def ranks_for(device: str, nproc: int | None) -> int:
    """--nproc-per-trial (default 1), checked against the device."""
    n = 1 if nproc is None else nproc
    check_nproc(n, resolve_device(device), None)
    return n


def script_workload(workload: str | None, command: list[str] | None) -> str | None:
    """--workload, or the command after `--` as a script workload."""
    if not command:
        return workload
    if workload is not None:
        raise ConfigError("give --workload or a script command after `--`, not both")
    return script_spec(command)
