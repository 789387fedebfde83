"""The simple multi-fidelity searches a user could write, on one long workload; writes
`## Baselines: WORKLOAD` into benchmarks/RESULTS.md, beside `## Tune: WORKLOAD`.

    python3 -m benchmarks.baseline_bench [--workload mnist1d-long] [--target 0.88]
        [--configs 9] [--rung 8] [--seeds 3] [--run-budget 300]
        [--recommendation 32,0.0141,0.9]

Both search the same --configs configurations, drawn once (seed 0): batch a power of
two in 32..512, SGD with momentum 0.9 at a constant LR log-uniform in 0.003..0.3 (what
a hand-written search looks like; the tune searches schedules and momentum too):
1. "one epoch each, continue the top 3": every configuration trains one epoch and
   pauses with a checkpoint; the 3 with the best validation metric then resume from
   their checkpoints, best first, each to the target (or --run-budget);
2. restart-based successive halving (eta 3): all train --rung training seconds from
   scratch, the best third 3x as long from scratch, and so on until one is left, which
   trains from scratch to the target.
Each search's wall time until its first model reached the target and in all are
recorded; then each one's pick (its fastest run to the target), the reference recipe
and --recommendation (a tune's, e.g. from `## Tune: WORKLOAD`) are re-measured with
--seeds fresh seeds, interleaved, on the test split (as tune_bench does), so every
ratio comes from this one run.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from autobatch import Budget, RunConfig, load_workload, run
from autobatch.train.checkpoint import Pause
from autobatch.workloads.builtin import BUILTINS
from benchmarks.report import machine_lines, write_section
from benchmarks.tune_bench import Contender, test_split_of, time_to_target

MOMENTUM = 0.9
TOP = 3  # the configurations "continue the top 3" resumes
ETA = 3  # successive halving keeps the best 1/ETA at each rung


@dataclass
class Search:
    """What one search cost and what it picked."""

    name: str
    wall_s: float = 0.0  # the whole search
    first_model_s: float | None = None  # wall time until a run first reached the target
    trained: int = 0  # runs or run pieces trained
    pick: tuple[float, int, float] | None = None  # (time to target, batch, LR)

    def reached(self, started: float, seconds: float | None, batch: int, lr: float) -> None:
        if seconds is None:
            return
        if self.first_model_s is None:
            self.first_model_s = time.time() - started
        if self.pick is None or seconds < self.pick[0]:
            self.pick = (seconds, batch, lr)


def configurations(n: int) -> list[tuple[int, float]]:
    draw = random.Random(0)
    return [(2 ** draw.randint(5, 9), 10 ** draw.uniform(math.log10(0.003), math.log10(0.3)))
            for _ in range(n)]


def config_for(batch: int, lr: float, target: float, budget: Budget) -> RunConfig:
    return RunConfig(batch_size=batch, lr=lr, momentum=MOMENTUM, target=target,
                     budget=budget, seed=0, optimizer="sgd")


def best_metric(result) -> float:
    return max((p.metric for p in result.trace), default=0.0)


def epoch_then_top(workload, configs, target: float, run_budget: float,
                   folder: Path) -> Search:
    search, started = Search("one epoch each, continue the top 3"), time.time()
    epoch_steps = [math.ceil(len(workload.train_data) / batch) for batch, _ in configs]
    scored = []
    for i, ((batch, lr), steps) in enumerate(zip(configs, epoch_steps)):
        result = run(workload, config_for(batch, lr, target, Budget(seconds=run_budget)),
                     device="cpu", pause=Pause(folder / f"{i}.ckpt", steps=steps))
        search.trained += 1
        search.reached(started, result.time_to_target_s, batch, lr)  # within one epoch
        scored.append((best_metric(result), i))
    for _, i in sorted(scored, reverse=True)[:TOP]:
        batch, lr = configs[i]
        if not (folder / f"{i}.ckpt").exists():  # it reached the target within the epoch
            continue
        result = run(workload, config_for(batch, lr, target, Budget(seconds=run_budget)),
                     device="cpu", resume=folder / f"{i}.ckpt")
        search.trained += 1
        search.reached(started, result.time_to_target_s, batch, lr)
    search.wall_s = time.time() - started
    return search


def successive_halving(workload, configs, target: float, rung_s: float,
                       run_budget: float) -> Search:
    search, started = Search(f"successive halving, restarts (eta {ETA})"), time.time()
    alive, seconds = list(configs), rung_s
    while len(alive) > 1:
        scored = []
        for batch, lr in alive:
            result = run(workload, config_for(batch, lr, target, Budget(seconds=seconds)),
                         device="cpu")
            search.trained += 1
            search.reached(started, result.time_to_target_s, batch, lr)
            scored.append((best_metric(result), (batch, lr)))
        scored.sort(reverse=True)
        alive = [c for _, c in scored[:max(1, len(alive) // ETA)]]
        seconds *= ETA
    batch, lr = alive[0]
    result = run(workload, config_for(batch, lr, target, Budget(seconds=run_budget)),
                 device="cpu")
    search.trained += 1
    search.reached(started, result.time_to_target_s, batch, lr)
    search.wall_s = time.time() - started
    return search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="mnist1d-long")
    parser.add_argument("--target", type=float, default=None,
                        help="default: the workload's suggested target")
    parser.add_argument("--configs", type=int, default=9)
    parser.add_argument("--rung", type=float, default=8.0,
                        help="successive halving's first rung, training seconds")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--run-budget", type=float, default=300.0)
    parser.add_argument("--recommendation", default=None,
                        help="BATCH,LR,MOMENTUM of a tune's recommendation (SGD, constant)")
    args = parser.parse_args()
    target = args.target or BUILTINS[args.workload].target
    workload = load_workload(args.workload)
    load_before = os.getloadavg()[0]
    configs = configurations(args.configs)
    with tempfile.TemporaryDirectory() as folder:
        searches = [epoch_then_top(workload, configs, target, args.run_budget, Path(folder)),
                    successive_halving(workload, configs, target, args.rung, args.run_budget)]
    for s in searches:
        print(f"{s.name}: {s.wall_s:.0f} s, first model {s.first_model_s}, pick {s.pick}",
              file=sys.stderr)
    reference = workload.reference.hparams
    contenders = [Contender("reference recipe", reference.batch_size, reference.lr,
                            reference.momentum, reference.optimizer, reference.schedule)]
    if args.recommendation:
        batch, lr, momentum = args.recommendation.split(",")
        contenders.append(Contender("tune's recommendation", int(batch), float(lr),
                                    float(momentum), "sgd"))
    picks = {s.name: Contender(f"pick of {s.name}", s.pick[1], s.pick[2], MOMENTUM, "sgd")
             for s in searches if s.pick is not None}
    contenders += picks.values()
    judged = test_split_of(workload)  # as tune_bench re-measures: data no search saw
    for seed in range(1, args.seeds + 1):
        for c in contenders:
            c.times.append(time_to_target(judged, target, c.batch_size, c.lr, c.momentum,
                                          c.optimizer, args.run_budget, 1000 + seed,
                                          c.schedule))
            print(f"seed {seed} {c.name}: {c.times[-1]:.2f}s", file=sys.stderr)
    write_section(f"## Baselines: {args.workload}", "\n".join(summary(
        args, target, configs, searches, contenders, picks, (load_before, os.getloadavg()[0]))))


def summary(args, target, configs, searches, contenders, picks, loads) -> list[str]:
    ref = contenders[0].median()
    rows = ["| configuration | batch | LR | median s to target | vs reference |",
            "|---|---:|---:|---:|---:|"]
    for c in contenders:
        missed = sum(not math.isfinite(t) for t in c.times)
        rows.append(f"| {c.name}{f' ({missed} missed)' if missed else ''} | {c.batch_size} | "
                    f"{c.lr:.3g} | {c.median():.1f} | {c.median() / ref:.2f} |")
    lines = [f"## Baselines: {args.workload}", "",
             *machine_lines(" ".join(["python3 -m benchmarks.baseline_bench", *sys.argv[1:]])),
             f"- Load average {loads[0]:.2f} before, {loads[1]:.2f} after (run alone).",
             f"- Target {target:g}; {len(configs)} configurations (seed 0): "
             + ", ".join(f"b{b} lr {lr:.3g}" for b, lr in configs) + ".", ""]
    for s in searches:
        pick = picks.get(s.name)
        first = (f"first model after {s.first_model_s:.0f} s (break-even "
                 f"**{s.first_model_s / ref:.2f}**)" if s.first_model_s is not None
                 else "no run reached the target")
        lines.append(f"- {s.name}: {s.wall_s:.0f} s, {s.trained} runs or pieces; {first}; "
                     f"whole search / reference time {s.wall_s / ref:.1f}"
                     + (f"; pick b{pick.batch_size} lr {pick.lr:.3g}" if pick else "") + ".")
    return [*lines, "", f"Re-measured with {args.seeds} fresh seeds, interleaved (training "
            "seconds to the target on the test split, which no search saw; a miss counts as "
            "infinite):", "",
            *rows]


if __name__ == "__main__":
    main()
