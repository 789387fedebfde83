"""bf16 vs fp32 (and channels-last) on the CPU: time per training step and peak memory.

    python3 -m benchmarks.precision_bench [--repeats 7] [--steps 10] [--write]

Workloads: mnist1d-cnn (batch 256; its inputs are 2-D, so no channels-last) and
torchvision:resnet18 on fake 32x32 images (batch 64: --image-size, --image-batch), in
fp32 and bf16, and for the 4-D one in channels-last too. Each step is autobatch's own
(`train_step` through `setup_run`: autocast and memory format as the training loop
has them), on one fixed batch already in memory: the model's compute, not data
loading. Step times: `--steps` steps after a warm-up, per repeat; the repeats go
round-robin over the configurations (A B C A B C ...) so a burst of load from another
process spreads over all of them; the table shows medians and the ratio to fp32.
Peak memory: the probe's measurement (a forked child per configuration trains two
steps and one evaluation batch; its peak resident memory, framework included).
The load average is recorded before and after (figures under a load above 2.5 are
not to be trusted). Prints a Markdown section; --write puts it into
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, replace

import torch

from autobatch.device import memory_info, rss_bytes
from autobatch.hyperparams import Hyperparams, Precision
from autobatch.measure.footprint import Footprint
from autobatch.train import RunSetup, first_batch, setup_run
from autobatch.workloads import Workload, load_workload
from benchmarks.report import machine_lines, write_section

HEADING = "## Mixed precision and channels-last on the CPU"
CPU = torch.device("cpu")
MIB = 2 ** 20


@dataclass(frozen=True)
class Case:
    workload: str
    batch: int
    precision: Precision
    channels_last: bool

    @property
    def name(self) -> str:
        return self.precision + (" channels-last" if self.channels_last else "")


def workloads(names: list[str], image_size: int,
              image_batch: int) -> dict[str, tuple[Workload, int]]:
    """The named workloads (each loaded only when named) with their batch."""
    loaders = {"mnist1d-cnn": lambda: (load_workload("mnist1d-cnn"), 256),
               "torchvision:resnet18": lambda: (load_workload(
                   "torchvision:resnet18", data="fake", image_size=image_size), image_batch)}
    return {name: loaders[name]() for name in names}


def cases(name: str, wl: Workload, batch: int) -> list[Case]:
    x, _ = first_batch(wl.train_data, 1)
    layouts = (False, True) if isinstance(x, torch.Tensor) and x.dim() == 4 else (False,)
    return [Case(name, batch, p, cl) for cl in layouts for p in ("fp32", "bf16")]


def setup_of(wl: Workload, case: Case) -> RunSetup:
    ref = wl.reference
    hparams = Hyperparams(batch_size=case.batch, lr=ref.lr if ref else 0.01, momentum=0.9,
                          optimizer=ref.optimizer if ref else None, precision=case.precision,
                          channels_last=case.channels_last)
    return setup_run(wl, hparams, CPU, seed=0)


def timed(setup: RunSetup, wl: Workload, batch: tuple, steps: int) -> float:
    """Seconds per training step over `steps` steps (the loss read back each step)."""
    started = time.perf_counter()
    for _ in range(steps):
        setup.step(wl, *batch).item()
    return (time.perf_counter() - started) / steps


def peak_mib(footprint: Footprint, case: Case) -> float | None:
    footprint = replace(footprint, precision=case.precision, channels_last=case.channels_last)
    found, _ = footprint.in_fork(case.batch, rss_bytes() + memory_info(CPU)[0])
    return None if found.oom else found.peak_bytes / MIB


def bench(names: list[str], repeats: int, steps: int, image_size: int,
          image_batch: int) -> list[str]:
    loads = [os.getloadavg()[0]]
    rows = []
    for name, (wl, batch) in workloads(names, image_size, image_batch).items():
        todo = cases(name, wl, batch)
        data = first_batch(wl.train_data, batch)
        setups = {case: setup_of(wl, case) for case in todo}
        for case in todo:  # warm-up: the first steps at a new shape are slow
            timed(setups[case], wl, data, max(2, steps // 2))
        times: dict[Case, list[float]] = {case: [] for case in todo}
        for _ in range(repeats):
            for case in todo:
                times[case].append(timed(setups[case], wl, data, steps))
        del setups
        base = statistics.median(times[todo[0]])
        footprint = Footprint.of(wl, CPU)  # finds the largest input once
        for case in todo:
            step = statistics.median(times[case])
            peak = peak_mib(footprint, case)
            rows.append(f"| {name} | {batch} | {case.name} | {step * 1e3:.2f} "
                        f"({min(times[case]) * 1e3:.2f}-{max(times[case]) * 1e3:.2f}) | "
                        f"{base / step:.2f}x | {'-' if peak is None else f'{peak:.0f}'} |")
    loads.append(os.getloadavg()[0])
    command = "python3 -m benchmarks.precision_bench " + " ".join(sys.argv[1:])
    return [HEADING, "", *machine_lines(command.strip()),
            f"- Load average (1 min): {loads[0]:.2f} before, {loads[1]:.2f} after",
            f"- Median of {repeats} interleaved repeats of {steps} steps, one fixed batch "
            "in memory; speed = fp32's step time / this one's; peak = resident memory of a "
            "forked child training 2 steps and 1 evaluation batch (the probe's measure)",
            "", "| workload | batch | precision | ms/step (min-max) | speed | peak MiB |",
            "|---|---|---|---|---|---|", *rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default="mnist1d-cnn,torchvision:resnet18")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--image-batch", type=int, default=64)
    parser.add_argument("--write", action="store_true", help="write into RESULTS.md")
    args = parser.parse_args()
    lines = bench(args.workloads.split(","), args.repeats, args.steps, args.image_size,
                  args.image_batch)
    print("\n".join(lines))
    if args.write:
        write_section(HEADING, "\n".join(lines))


if __name__ == "__main__":
    main()
