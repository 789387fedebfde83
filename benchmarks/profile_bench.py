"""Fidelity and cost of the throughput profiler; writes `## Throughput profile` into
benchmarks/RESULTS.md.

    python3 benchmarks/profile_bench.py [--workloads mnist1d-cnn,mnist1d-mlp] [--runs 5]

Checks (goals from issue 4):
1. the t(B) fit predicts the measured step time at batches it was not fitted on (<= 15%);
2. predicted epoch time vs full epochs timed with the workload's pipeline (<= 10%);
3. B_simple vs the exact tr(Sigma)/|G|^2 from per-example gradients on the same
   checkpoint (<= 25%);
4. seconds spent by the auto profile (6 sizes and the default range), noise included.
Everything is interleaved (A B A B ...) and reported as medians: the machine is shared.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import torch

import autobatch
from autobatch.measure import profile
from autobatch.measure.noise import exact_noise_scale, measure_noise
from autobatch.measure.step_fit import auto_batch_sizes, fit_step_time, noise_batch_sizes
from autobatch.measure.throughput import NOISE_DRAWS, NOISE_WARMUP_STEPS, profile_recipe
from autobatch.train import TrainBatches, build_optimizer, train_step
from autobatch.workloads import Workload, load_workload

RESULTS = Path(__file__).parent / "RESULTS.md"
HEADING = "## Throughput profile"
HELD_OUT = (48, 384)  # not powers of two: never among the fitted sizes
EPOCH_SIZES = (32, 128, 512)
CPU = torch.device("cpu")


def fit_check(workload: Workload, runs: int) -> list[str]:
    """Profile auto sizes + held-out sizes; refit without the held-out ones."""
    errors: dict[int, list[float]] = {b: [] for b in HELD_OUT}
    for run in range(runs):
        result = profile(workload, device="cpu", noise=False, seed=run,
                         batch_sizes=sorted({*autobatch_sizes(workload), *HELD_OUT}))
        fitted = [r for r in result.rows if r.fits and r.batch_size not in HELD_OUT]
        fit = fit_step_time([r.batch_size for r in fitted], [r.iter_s for r in fitted])
        for row in result.rows:
            if row.batch_size in HELD_OUT:
                predicted = fit.alpha + fit.beta * row.batch_size
                errors[row.batch_size].append(predicted / row.iter_s - 1)
    return [f"| {workload.name} | step time at B={b} (held out of the fit) | "
            f"{fmt_errors(errs)} | 15% | {verdict(errs, 0.15)} |"
            for b, errs in errors.items()]


def autobatch_sizes(workload: Workload) -> tuple[int, ...]:
    return auto_batch_sizes(len(workload.train_data))


def timed_epoch(model, optimizer, workload: Workload, steps: int, stream) -> float:
    """One full epoch (`steps` batches of the workload's TrainBatches), as run() trains."""
    started = time.perf_counter()
    for _ in range(steps):
        x, y = next(stream)
        train_step(model, optimizer, workload, x, y).item()
    return time.perf_counter() - started


def epoch_check(workload: Workload, runs: int) -> list[str]:
    """Predicted epoch time (profile) vs measured full epochs, interleaved by size."""
    predicted = {b: [] for b in EPOCH_SIZES}
    measured = {b: [] for b in EPOCH_SIZES}
    config = profile_recipe(workload)
    for run in range(runs):
        result = profile(workload, device="cpu", batch_sizes=EPOCH_SIZES, noise=False,
                         seed=run)
        for row in result.rows:
            predicted[row.batch_size].append(row.epoch_s)
        torch.manual_seed(run)
        model = workload.model_factory()
        optimizer = build_optimizer(workload, model, config)
        streams = {}
        for b in EPOCH_SIZES:
            batches = TrainBatches(workload.train_data, b, CPU, seed=run)
            streams[b] = (batches.batches_per_epoch, iter(batches))
            timed_epoch(model, optimizer, workload, *streams[b])  # warm-up epoch
        for b in EPOCH_SIZES:  # each run: the profile, then one timed epoch per size
            measured[b].append(timed_epoch(model, optimizer, workload, *streams[b]))
    lines = []
    for b in EPOCH_SIZES:
        ratios = [p / m - 1 for p, m in zip(predicted[b], measured[b])]
        lines.append(
            f"| {workload.name} | epoch time at B={b}: predicted "
            f"{statistics.median(predicted[b]):.3f} s vs measured "
            f"{statistics.median(measured[b]):.3f} s | {fmt_errors(ratios)} | 10% | "
            f"{verdict(ratios, 0.10)} |")
    return lines


def noise_check(workload: Workload, runs: int) -> list[str]:
    """The profiler's noise estimate vs the exact value on the same checkpoint."""
    n = len(workload.train_data)
    b_small, b_big = noise_batch_sizes(n, n)
    config = profile_recipe(workload)
    errors, pairs = [], []
    for seed in range(runs):
        torch.manual_seed(seed)
        model = copy.deepcopy(workload.model_factory())
        optimizer = build_optimizer(workload, model, config)
        est = measure_noise(model, optimizer, workload, CPU, b_small=b_small, b_big=b_big,
                            draws=NOISE_DRAWS, warmup_steps=NOISE_WARMUP_STEPS,
                            warmup_batch=min(config.batch_size, n), seed=seed)
        exact, _, _ = exact_noise_scale(model, workload.loss_fn, workload.train_data.x,
                                        workload.train_data.y)
        errors.append(est.b_simple / exact - 1)
        pairs.append(f"{est.b_simple:.0f} [{est.low:.0f}, {est.high:.0f}] vs {exact:.0f}")
    return [f"| {workload.name} | B_simple ({b_small}/{b_big}, {NOISE_DRAWS} draws, after "
            f"{NOISE_WARMUP_STEPS} steps) vs exact per-example, per seed: "
            f"{'; '.join(pairs)} | {fmt_errors(errors)} | 25% | {verdict(errors, 0.25)} |"]


def cost_check(workload: Workload, runs: int) -> list[str]:
    """Wall seconds of the auto profile, noise included: 6 sizes, and the full range."""
    cases = {"6 sizes (--max-batch 256)": 256, "default auto range": None}
    seconds: dict[str, list[float]] = {k: [] for k in cases}
    count = {}
    for run in range(runs):
        for name, max_batch in cases.items():
            started = time.perf_counter()
            result = profile(workload, device="cpu", max_batch=max_batch, seed=run)
            seconds[name].append(time.perf_counter() - started)
            count[name] = len(result.rows)
    return [f"| {workload.name} | profile seconds, {name} ({count[name]} sizes), noise "
            f"included: median {statistics.median(s):.2f} s, min {min(s):.2f}, max "
            f"{max(s):.2f} | - | ~5 s | {'met' if statistics.median(s) <= 5 else 'MISSED'} |"
            for name, s in seconds.items()]


def fmt_errors(errors: list[float]) -> str:
    worst = max(errors, key=abs)
    return f"median {statistics.median(errors):+.1%}, worst {worst:+.1%} (n={len(errors)})"


def verdict(errors: list[float], goal: float) -> str:
    median_ok = abs(statistics.median(errors)) <= goal
    all_ok = all(abs(e) <= goal for e in errors)
    return "met" if all_ok else ("met (median)" if median_ok else "MISSED")


def write_section(body: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    section = f"{HEADING}\n\n{body}\n"
    text = pattern.sub(lambda _: section, text) if pattern.search(text) \
        else text.rstrip("\n") + "\n\n" + section
    tmp = RESULTS.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, RESULTS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="mnist1d-cnn,mnist1d-mlp")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    lines = []
    for name in args.workloads.split(","):
        workload = load_workload(name)
        profile(workload, device="cpu", batch_sizes=[8, 64], noise=False)  # process warm-up
        for check in (fit_check, epoch_check, noise_check, cost_check):
            lines += check(workload, args.runs)
            print("\n".join(lines[-3:]), file=sys.stderr, flush=True)
    cpu = platform.processor() or platform.machine()
    try:
        model_name = next(line.split(":", 1)[1].strip()
                          for line in Path("/proc/cpuinfo").read_text().splitlines()
                          if line.startswith("model name"))
    except (OSError, StopIteration):
        model_name = cpu
    command = "python3 benchmarks/profile_bench.py " + " ".join(sys.argv[1:])
    body = "\n".join([
        f"Date: {dt.date.today().isoformat()}. Machine: {model_name}, {os.cpu_count()} "
        f"cores (shared with other jobs: +-30% noise), CPU only, torch threads "
        f"{torch.get_num_threads()}. Versions: Python {platform.python_version()}, torch "
        f"{torch.__version__}, autobatch {autobatch.__version__}.",
        f"Command: `{command.strip()}` ({time.perf_counter() - started:.0f} s in all).",
        "",
        "Errors are predicted / measured - 1; medians over runs (seeds); each run "
        "interleaves the sizes (A B A B ...).",
        "",
        "| workload | check | error | goal | verdict |",
        "|---|---|---|---|---|",
        *lines,
    ])
    write_section(body)
    print(body)


if __name__ == "__main__":
    main()
