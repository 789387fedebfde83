"""Memory probe vs the batch-size finders users know, on one workload and CPU memory limit.

    python3 benchmarks/probe_bench.py [--limit 1.5GiB] [--image-size 64]

Methods (each candidate is a forked child under the same RSS limit, killed past it):
- autobatch probe: 2 training steps + 1 evaluation batch per candidate, headroom 10%.
- Lightning "power": double from 2 until a candidate fails; 3 training steps each.
- Lightning "binsearch": the same doubling, then bisection; 3 training steps each.
- Accelerate find_executable_batch_size: start large, x0.9 after every failure.
The true maximum (peak <= limit x 0.9, the probe's criterion) is found by measuring
every batch upward from the probe's answer until three in a row fail. "OOM after"
is a short full training run (5 steps through `autobatch.run`, DataLoader included)
plus its evaluation at the batch each method found, under the same limit.
Writes a "## Memory probe" section into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision

import autobatch
from autobatch.config import Budget, RunConfig
from autobatch.device import (
    cpu_name,
    peak_memory,
    proc_status_bytes,
    reset_peak_memory,
    rss_bytes,
)
from autobatch.measure import probe as run_probe
from autobatch.measure.footprint import Footprint, largest_input
from autobatch.measure.forked import ChildOutOfMemory, anon_bytes, run_in_child
from autobatch.memory_size import parse_bytes
from autobatch.train import build_optimizer, run, train_step
from autobatch.workloads import Workload, load_workload

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADROOM = 0.1
BASELINE_STEPS = 3  # Lightning's steps_per_trial default
ACCELERATE_START = 1024
GIB = 1024 ** 3


class Tracker:
    """Counts candidates, steps and seconds of one method; `fits(b)` is its oracle."""

    def __init__(self, fits: Callable[[int], tuple[bool, int]]) -> None:
        self._fits = fits
        self.candidates = self.steps = 0
        self.seconds = 0.0

    def __call__(self, batch: int) -> bool:
        started = time.perf_counter()
        ok, steps = self._fits(batch)
        self.seconds += time.perf_counter() - started
        self.candidates += 1
        self.steps += steps
        return ok


def baseline_oracle(wl: Workload, limit: int) -> Callable[[int], tuple[bool, int]]:
    """Lightning/Accelerate trial: BASELINE_STEPS training steps; fits = no OOM."""
    sample, label = largest_input(wl)

    def fits(batch: int) -> tuple[bool, int]:
        def child(send):
            torch.set_num_threads(1)
            send(("start", anon_bytes("self")))
            model = wl.model_factory().train()
            opt = build_optimizer(wl, model, RunConfig(batch_size=batch, lr=0.1))
            x = sample.unsqueeze(0).repeat(batch, 1, 1, 1)
            y = label.unsqueeze(0).repeat(batch)
            for _ in range(BASELINE_STEPS):
                send(("step",))
                train_step(model, opt, wl, x, y)

        try:
            _, steps = run_in_child(child, anon_cap=limit - rss_bytes())
        except ChildOutOfMemory as oom:
            return False, oom.steps
        return True, steps

    return fits


def lightning(fits: Tracker, max_batch: int, bisect: bool) -> int:
    """Lightning's scale_batch_size: 'power' doubles; 'binsearch' then bisects."""
    low, batch = 0, 2
    while batch <= max_batch and fits(batch):
        low, batch = batch, batch * 2
    high = min(batch, max_batch + 1)
    if not bisect:
        return low
    while high - low > 1:
        mid = (low + high) // 2
        if fits(mid):
            low = mid
        else:
            high = mid
    return low


def accelerate(fits: Tracker, start: int) -> int:
    batch = start
    while batch > 0 and not fits(batch):
        batch = int(batch * 0.9)
    return batch


def probe_oracle(wl: Workload, limit: int) -> Callable[[int], tuple[bool, int]]:
    """The probe's own candidate (2 steps + eval), judged by peak <= limit x 0.9."""
    sample, label = largest_input(wl)
    cand = Footprint(workload=wl, device=torch.device("cpu"), sample=sample, label=label)

    def fits(batch: int) -> tuple[bool, int]:
        m, steps = cand.in_fork(batch, limit)
        return (not m.oom and m.peak_bytes <= limit * (1 - HEADROOM)), steps

    return fits


def true_maximum(fits: Tracker, start: int) -> int:
    best = start if fits(start) else 0
    batch, failures = start + 1, 0
    while failures < 3:
        if fits(batch):
            best, failures = batch, 0
        else:
            failures += 1
        batch += 1
    return best


def oom_after(wl: Workload, batch: int, limit: int) -> tuple[str, float]:
    """A short full training run + evaluation at `batch` under the limit."""
    baseline = rss_bytes()

    def child(send):
        torch.set_num_threads(1)
        reset_peak_memory(torch.device("cpu"))
        start, file_start = rss_bytes(), proc_status_bytes("RssFile")
        send(("start", anon_bytes("self")))
        run(wl, RunConfig(batch_size=batch, lr=0.1, optimizer="sgd",
                          budget=Budget(steps=5)), device="cpu")
        # Counted as the probe counts it: growth past the fork, less library pages.
        return peak_memory(torch.device("cpu")) - start - (
            proc_status_bytes("RssFile") - file_start)

    try:
        growth, _ = run_in_child(child, anon_cap=limit - baseline)
    except ChildOutOfMemory:
        return "OOM", float("nan")
    return "ok", (baseline + growth) / GIB


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", default="1.5GiB")
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()
    limit = parse_bytes(args.limit)
    wl = load_workload("torchvision:resnet18", data="fake", image_size=args.image_size)
    max_batch = len(wl.train_data)
    rows = []

    started = time.perf_counter()
    result = run_probe(wl, device="cpu", headroom=HEADROOM, memory_limit=limit,
                       use_cache=False)
    probe_seconds = time.perf_counter() - started
    print(f"probe: {result.max_batch_size} in {len(result.attempts)} candidates, "
          f"{probe_seconds:.1f}s: {[(a.batch_size, a.outcome) for a in result.attempts]}",
          flush=True)
    rows.append(["autobatch probe (headroom 10%)", len(result.attempts), result.train_steps,
                 probe_seconds, result.max_batch_size])

    for name, method in (
            ("Lightning power (doubling)", lambda f: lightning(f, max_batch, bisect=False)),
            ("Lightning binsearch (doubling + bisection)",
             lambda f: lightning(f, max_batch, bisect=True)),
            (f"Accelerate x0.9 walk-down from {ACCELERATE_START}",
             lambda f: accelerate(f, ACCELERATE_START))):
        tracker = Tracker(baseline_oracle(wl, limit))
        found = method(tracker)
        print(f"{name}: {found} in {tracker.candidates} candidates, {tracker.seconds:.1f}s",
              flush=True)
        rows.append([name, tracker.candidates, tracker.steps, tracker.seconds, found])

    exhaustive = Tracker(probe_oracle(wl, limit))
    truth = true_maximum(exhaustive, result.max_batch_size)
    print(f"true maximum {truth} ({exhaustive.candidates} candidates)", flush=True)
    for row in rows:
        status, peak = oom_after(wl, row[4], limit)
        row += [status, peak]
        print(row, flush=True)

    command = "python3 benchmarks/probe_bench.py " + " ".join(sys.argv[1:])
    write_results(rows, truth, exhaustive.candidates, limit, args.image_size, command.strip(),
                  result)


def write_results(rows: list, truth: int, exhaustive_candidates: int, limit: int,
                  image_size: int, command: str, result) -> None:
    bisect_steps = rows[2][2]
    lines = [
        "## Memory probe", "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- Machine: {cpu_name()}, {torch.get_num_threads()} threads, "
        f"{result.device.total_bytes / GIB:.0f} GiB RAM, shared with other work "
        "(timings noisy); candidates run single-threaded in forked children",
        f"- Versions: autobatch {autobatch.__version__}, torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}, Python {platform.python_version()}",
        f"- Command: `{command}`",
        f"- Workload: torchvision:resnet18 on fake {image_size}x{image_size} images, SGD "
        f"momentum 0.9; CPU limit {limit / GIB:.2f} GiB on the process's peak RSS; "
        f"the probe keeps 10% headroom (budget {limit * (1 - HEADROOM) / GIB:.2f} GiB)",
        f"- True maximum under the probe's criterion (peak <= budget): **{truth}**, found by "
        f"measuring every batch from the probe's answer upward until 3 in a row failed "
        f"({exhaustive_candidates} candidates)",
        f"- Probe's memory model: {result.fixed_bytes / GIB:.3f} GiB + "
        f"{result.bytes_per_sample / 2**20:.2f} MiB x batch (R^2 "
        f"{result.fit_r2 if result.fit_r2 is None else round(result.fit_r2, 4)}); "
        f"batches tried: {', '.join(f'{a.batch_size} {a.outcome}' for a in result.attempts)}",
        "",
        "| method | candidates | real steps | seconds | batch found | % of true max "
        "| steps vs binsearch | after: 5 steps + eval | peak after (GiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name, cands, steps, secs, found, status, peak in rows:
        peak_text = "-" if peak != peak else f"{peak:.2f}"
        lines.append(f"| {name} | {cands} | {steps} | {secs:.1f} | {found} | "
                     f"{100 * found / truth:.0f}% | {steps / bisect_steps:.2f} | {status} | "
                     f"{peak_text} |")
    probe_row = rows[0]
    goals = [
        ("<= 1/3 of bisection's steps", probe_row[2] <= bisect_steps / 3),
        (">= 95% of the true maximum", probe_row[4] >= 0.95 * truth),
        ("zero OOM afterwards", probe_row[5] == "ok"),
        ("<= 6 candidates", probe_row[1] <= 6),
    ]
    lines += ["", "Goals for the probe: " + "; ".join(
        f"{g}: {'met' if ok else '**missed**'}" for g, ok in goals) + ".", ""]
    section = "\n".join(lines)
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(r"^## Memory probe\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section, text) if pattern.search(text) else \
        text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text)
    print(section)


if __name__ == "__main__":
    main()
