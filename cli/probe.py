"""`autobatch probe`: the largest batch that fits, with the evidence."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from autobatch.device import resolve_device
from autobatch.measure import ProbeResult
from autobatch.measure import probe as run_probe
from autobatch.measure.rank_probe import probe_ranks
from autobatch.memory_size import bytes_in_words, parse_bytes
from autobatch.search.parallel_runner import rank_spec
from autobatch_cli.options import (
    ChannelsLastOpt,
    DeviceOpt,
    JsonOpt,
    NprocOpt,
    PrecisionOpt,
    WorkloadOpt,
    WorkloadOptions,
    numerics,
    ranks_for,
    with_workload_options,
    workload_from,
)
from autobatch_cli.output import exits_cleanly, print_json, stage_steps, stderr, stdout

GIB = 1024 ** 3


@with_workload_options
@exits_cleanly
def probe(
    workload: WorkloadOpt,
    device: DeviceOpt = "auto",
    min_batch: Annotated[int, typer.Option(help="Smallest batch to consider.")] = 1,
    max_batch: Annotated[Optional[int], typer.Option(
        help="Largest batch to consider. Default: the training set size.")] = None,
    headroom: Annotated[float, typer.Option(
        help="Fraction of usable memory left free, in [0, 0.9).")] = 0.1,
    memory_limit: Annotated[Optional[str], typer.Option(
        help="Usable memory, e.g. 4GiB, 512MiB, 2GB. On CPU it caps the process's peak "
             "resident memory. Default: available RAM (CPU) or free device memory.")] = None,
    no_cache: Annotated[bool, typer.Option(
        "--no-cache", help="Probe afresh instead of reusing a cached result.")] = False,
    precision: PrecisionOpt = None,
    channels_last: ChannelsLastOpt = False,
    nproc_per_trial: NprocOpt = None,
    json_output: JsonOpt = False,
    workload_options: WorkloadOptions | None = None,
) -> None:
    """Find the largest batch that trains (forward, backward, optimizer step, evaluation)
    within the memory, by a few real steps at a few batch sizes: the largest per-device
    micro-batch in --precision and memory format; with --nproc-per-trial, on every rank's
    device, the least of their answers."""
    how = numerics(None, precision, channels_last)
    limit = parse_bytes(memory_limit) if memory_limit is not None else None
    if memory_limit is not None:
        stderr.print(f"memory limit {bytes_in_words(memory_limit)}", markup=False)
    wl = workload_from(workload, workload_options)
    nproc = ranks_for(device, nproc_per_trial)
    if nproc > 1:
        with stderr.status(f"probing {wl.name} on {nproc} ranks ..."):
            result = probe_ranks(rank_spec(wl, nproc), nproc, resolve_device(device),
                                 min_batch=min_batch, max_batch=max_batch, headroom=headroom,
                                 memory_limit=limit, **how)
    else:
        with stderr.status(f"probing {wl.name} ...") as status:
            result = run_probe(wl, device=device, min_batch=min_batch, max_batch=max_batch,
                               headroom=headroom, memory_limit=limit, use_cache=not no_cache,
                               **how, progress=stage_steps(status, f"probing {wl.name}"))
    if json_output:
        print_json(result.to_dict())
    else:
        stdout.print(probe_table(result))


def _gib(n: float | None) -> str:
    return "-" if n is None else f"{n / GIB:.3f} GiB"


def probe_table(r: ProbeResult) -> Table:
    table = Table(title=f"{r.workload} on {r.device.name} ({r.device.type})",
                  show_header=False)
    limit = _gib(r.memory_limit_bytes) if r.memory_limit_bytes else "none"
    per_sample = "-" if r.bytes_per_sample is None else f"{r.bytes_per_sample / 2**20:.3f} MiB"
    r2 = "-" if r.fit_r2 is None else f"{r.fit_r2:.4f}"
    rows = [
        ("max batch size", f"{r.max_batch_size} (limited by {r.limited_by}; "
                           f"bounds {r.min_batch}..{r.max_batch})"
                           + (f", per device, the least of {r.ranks} ranks" if r.ranks > 1
                              else "")),
        ("precision", r.precision + (", channels-last" if r.channels_last else "")),
        ("peak at that batch", _gib(r.peak_bytes)),
        ("peak spread", _spread(r)),
        ("without headroom", _without_headroom(r)),
        ("budget / usable", f"{_gib(r.budget_bytes)} / {_gib(r.usable_bytes)} "
                            f"(headroom {r.headroom:.0%}, limit {limit})"),
        ("memory model", f"{_gib(r.fixed_bytes)} + {per_sample} x batch (R^2 {r2})"),
        ("device memory", f"{_gib(r.device.free_bytes)} free of {_gib(r.device.total_bytes)}"),
        ("batches tried", ", ".join(
            f"{a.batch_size}:{a.outcome}" + (f"@{a.peak_bytes / GIB:.2f}G" if a.peak_bytes
                                             else "") for a in r.attempts)),
        ("training steps", str(r.train_steps)),
        ("seconds", f"{r.seconds:.1f}" + (" (cached)" if r.from_cache else "")),
        ("isolation", r.isolation),
    ]
    if r.device.other_processes_bytes is not None:
        rows.append(("other processes", _gib(r.device.other_processes_bytes)))
    if r.allocator:
        rows.append(("allocator", ", ".join(f"{k}={v}" for k, v in r.allocator.items())))
    for key, value in rows:
        table.add_row(key, value)
    return table


def _spread(r: ProbeResult) -> str:
    repeated = [a.batch_size for a in r.attempts if a.repeat]
    if r.spread_bytes is None or not repeated:
        return "-"
    return f"{_gib(r.spread_bytes)} (batch {repeated[0]} run twice; added to every peak)"


def _without_headroom(r: ProbeResult) -> str:
    if r.fits_batch_size is None:
        return "-"
    cost = 1 - r.max_batch_size / r.fits_batch_size
    return (f"{r.fits_batch_size} (the memory model's largest batch under usable memory; "
            f"the headroom costs {cost:.0%} of it)")
