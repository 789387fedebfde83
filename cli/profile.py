"""`autobatch profile`: time per step and per epoch vs batch size, and the noise scale."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from autobatch.device import resolve_device
from autobatch.errors import ConfigError
from autobatch.measure import ProfileResult
from autobatch.measure import probe as run_probe
from autobatch.measure import profile as run_profile
from autobatch.measure.rank_profile import profile_ranks
from autobatch.measure.step_fit import auto_batch_sizes
from autobatch.measure.trust import retaken
from autobatch.search.parallel_runner import rank_spec
from autobatch_cli.options import (
    ChannelsLastOpt,
    DeviceOpt,
    JsonOpt,
    NprocOpt,
    PrecisionOpt,
    SeedOpt,
    WorkloadOpt,
    WorkloadOptions,
    numerics,
    ranks_for,
    with_workload_options,
    workload_from,
)
from autobatch_cli.output import exits_cleanly, print_json, stage_steps, stderr, stdout


@with_workload_options
@exits_cleanly
def profile(
    workload: WorkloadOpt,
    batch_sizes: Annotated[str, typer.Option(
        "--batch-sizes",
        help="Comma-separated batch sizes, or 'auto': powers of two from 8 up to "
             "--max-batch, plus --max-batch.")] = "auto",
    max_batch: Annotated[Optional[int], typer.Option(
        min=1, help="Largest batch that fits (e.g. from `autobatch probe`). Default: the "
             "training set size. Larger sizes are reported as not fitting.")] = None,
    use_probe: Annotated[bool, typer.Option(
        "--probe", help="Bound the sizes by the memory probe's largest batch (its cached "
             "result for this workload and device when there is one).")] = False,
    knee_gain: Annotated[float, typer.Option(
        help="The knee is the largest batch whose doubling still raises samples/s by "
             "at least this fraction.")] = 0.10,
    noise: Annotated[bool, typer.Option(
        "--noise/--no-noise", help="Estimate the gradient noise scale B_simple.")] = True,
    plot: Annotated[Optional[Path], typer.Option(
        help="Write a PNG of the curves here.")] = None,
    save: Annotated[Optional[Path], typer.Option(
        help="Write the profile as JSON here (input for later stages).")] = None,
    precision: PrecisionOpt = None,
    channels_last: ChannelsLastOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    nproc_per_trial: NprocOpt = None,
    json_output: JsonOpt = False,
    workload_options: WorkloadOptions | None = None,
) -> None:
    """Measure time per iteration, samples/s and time per epoch against batch size, each
    step trained in --precision and memory format; with --nproc-per-trial, per global
    batch on that many ranks (the gradient all-reduce included)."""
    how = numerics(None, precision, channels_last)
    sizes = parse_batch_sizes(batch_sizes, name="--batch-sizes")
    wl = workload_from(workload, workload_options)
    nproc = ranks_for(device, nproc_per_trial)
    if nproc > 1:
        if use_probe:
            raise ConfigError("--probe with --nproc-per-trial: run `autobatch probe "
                              "--nproc-per-trial N` and give --max-batch (per device x N)")
        limit = min(max_batch or len(wl.train_data), len(wl.train_data))
        wanted = [b for b in (sizes or auto_batch_sizes(limit)) if b % nproc == 0]
        with stderr.status(f"profiling {wl.name} on {nproc} ranks ..."):
            result = profile_ranks(rank_spec(wl, nproc), nproc, resolve_device(device),
                                   wanted, noise=noise, seed=seed, **how)
        show_profile(result, save, plot, json_output)
        return
    if use_probe:
        with stderr.status(f"probing {wl.name} ...") as status:
            found = run_probe(wl, device=device, **how,
                              progress=stage_steps(status, f"probing {wl.name}"))
        stderr.print(f"largest batch that fits: {found.max_batch_size}"
                     + (" (cached)" if found.from_cache else ""))
        max_batch = min(max_batch or found.max_batch_size, found.max_batch_size)
    with stderr.status(f"profiling {wl.name} ...") as status:
        result, doubt = retaken(lambda: run_profile(
            wl, device=device, batch_sizes=sizes, max_batch=max_batch, knee_gain=knee_gain,
            noise=noise, seed=seed, progress=stage_steps(status, f"profiling {wl.name}"),
            **how))
    if doubt:
        stderr.print(f"warning: {doubt}", markup=False, highlight=False)
    show_profile(result, save, plot, json_output)


def show_profile(result: ProfileResult, save: Path | None, plot: Path | None,
                 json_output: bool) -> None:
    if save is not None:
        result.save(save)
    if plot is not None:
        from autobatch.report.plots import plot_profile

        plot_profile(result, plot)
        stderr.print(f"plot written to {plot}")
    if json_output:
        print_json(result.to_dict())
    else:
        stdout.print(profile_table(result))
        for line in summary_lines(result):
            stdout.print(line, markup=False, highlight=False)


def noise_line(noise) -> str:
    """B_simple and its interval; a bound the draws cannot resolve reads as unbounded."""
    draws = f"{noise.draws} draws at batch {noise.b_small} and {noise.b_big}"
    if noise.b_simple is None:
        return (f"B_simple   not resolved: at these batch sizes the gradient noise hides "
                f"the mean gradient ({draws}); B_simple is likely far above batch "
                f"{noise.b_big}")
    if noise.low is None:
        interval = "unbounded"
    elif noise.high is None:
        interval = f"[{noise.low:.0f}, unbounded)"
    else:
        interval = f"[{noise.low:.0f}, {noise.high:.0f}]"
    return f"B_simple   {noise.b_simple:.0f}  {noise.level:.0%} interval {interval}  ({draws})"


def parse_batch_sizes(text: str, *, name: str = "batch_sizes") -> tuple[int, ...] | None:
    """'auto' -> None; '8,16,32' -> (8, 16, 32) (sorted, duplicates dropped)."""
    if text.strip().lower() == "auto":
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ConfigError(f"{name} must be 'auto' or a comma-separated list of integers "
                          f">= 1, got {text!r}")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"{name} must be 'auto' or a comma-separated list of integers "
                          f">= 1, got {text!r}") from None
    if min(sizes) < 1:
        raise ConfigError(f"{name} must be integers >= 1, got {text!r}")
    return tuple(sorted(set(sizes)))


def profile_table(result: ProfileResult) -> Table:
    table = Table(title=f"{result.workload} on {result.device} "
                        f"({result.train_size:,} samples per epoch)")
    for name in ("batch", "ms/iter", "min-max", "samples/s", "s/epoch", "wait", "note"):
        table.add_column(name, justify="left" if name == "note" else "right")
    for row in result.rows:
        if not row.fits:
            table.add_row(str(row.batch_size), "-", "-", "-", "-", "-",
                          f"no fit: {row.reason}")
            continue
        notes = []
        if row.batch_size == result.knee:
            notes.append("knee")
        if row.input_bound:
            notes.append("input-bound")
        table.add_row(
            str(row.batch_size), f"{row.iter_s * 1e3:.2f}",
            f"{row.iter_s_min * 1e3:.3g}-{row.iter_s_max * 1e3:.3g}",
            f"{row.samples_per_s:,.0f}", f"{row.epoch_s:.3f}", f"{row.data_wait:.0%}",
            ", ".join(notes))
    return table


def summary_lines(result: ProfileResult) -> list[str]:
    lines = []
    if result.alpha is not None and result.beta is not None:
        b_sat = f"{result.b_sat:.0f}" if result.b_sat is not None else "unbounded"
        lines.append(f"step time  t(B) = {result.alpha * 1e3:.3f} ms + "
                     f"{result.beta * 1e6:.3f} µs x B   B_sat = alpha/beta = {b_sat}   "
                     f"fit error {result.fit_error:.1%}")
    else:
        lines.append("step time  not fitted: fewer than 2 batch sizes measured")
    knee = str(result.knee) if result.knee is not None else "-"
    lines.append(f"knee       {knee} (largest batch whose doubling still adds "
                 f">= {result.knee_gain:.0%} samples/s)")
    noise = result.noise
    if noise is not None:
        lines.append(noise_line(noise))
    if result.eval_pass_s is not None:
        lines.append(f"eval pass  {result.eval_pass_s * 1e3:.1f} ms")
    if result.ranks > 1:
        lines.append(f"ranks      {result.ranks} (batch sizes are global; the step time "
                     f"includes the gradient all-reduce)")
    lines.append(f"profiled in {result.seconds:.1f} s ({result.precision}"
                 + (", channels-last)" if result.channels_last else ")"))
    return lines
