"""Do schedules shorten the time to target, and does warmup rescue a large batch?

Two measurements, each interleaved (every seed runs every configuration in turn, so a
change in the machine's speed hits them alike) and summarised by medians over seeds:

1. At a known-good recipe (batch, peak LR, momentum), the same peak LR with each
   schedule shape: constant, cosine, linear, wsd (20% cooldown). The decaying shapes
   end at a horizon of HORIZON_FACTOR x the constant run's median epochs to target,
   so the LR is still annealing where the constant run crossed the target.
2. At 4x the predicted best batch, the LR scaled by the linear rule, with and without
   a 5-epoch linear warmup (Goyal et al. 2017's recipe).

Time to target is the training loop's own (seconds of training, evaluation
excluded). A run that misses the target within its budget counts as slower than any
that reached it (its time is the budget).

    python3 -m benchmarks.schedule_bench --seeds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass

from autobatch import Budget, RunConfig, Schedule, load_workload, run
from benchmarks.report import machine_lines, write_section

HORIZON_FACTOR = 1.25
BUDGET_S = 60.0


@dataclass(frozen=True)
class Case:
    workload: str
    target: float
    batch: int
    lr: float
    momentum: float


# Known-good recipes: the best cell of the tune benchmark's grid (mnist1d-cnn), and a
# recommendation of `autobatch tune` (digits-cnn).
CASES = (Case("mnist1d-cnn", 0.9, 256, 0.3, 0.9), Case("digits-cnn", 0.97, 128, 0.1, 0.9))
LARGE = Case("mnist1d-cnn", 0.9, 800, 0.3 * 800 / 256, 0.9)  # 4x the predicted best ~200


def timed(case: Case, schedule: Schedule, seed: int) -> tuple[float, float | None]:
    """(seconds to target or the budget, epochs to target or None)."""
    wl = load_workload(case.workload)
    config = RunConfig(batch_size=case.batch, lr=case.lr, momentum=case.momentum,
                       schedule=schedule, target=case.target, budget=Budget(seconds=BUDGET_S),
                       seed=seed)
    result = run(wl, config, device="cpu")
    if not result.target_reached:
        return BUDGET_S, None
    return result.time_to_target_s, result.samples_to_target / len(wl.train_data)


def interleaved(case: Case, schedules: dict[str, Schedule], seeds: range
                ) -> dict[str, list[tuple[float, float | None]]]:
    out: dict[str, list[tuple[float, float | None]]] = {name: [] for name in schedules}
    for seed in seeds:
        for name, schedule in schedules.items():
            out[name].append(timed(case, schedule, seed))
            print(f"{case.workload} seed {seed} {name}: {out[name][-1]}", file=sys.stderr)
    return out


def row(name: str, runs: list[tuple[float, float | None]], base: float | None) -> str:
    times = [t for t, _ in runs]
    reached = [e for _, e in runs if e is not None]
    median = statistics.median(times)
    ratio = f"{median / base:.2f}" if base else "1.00"
    epochs = f"{statistics.median(reached):.1f}" if reached else "-"
    return (f"| {name} | {median:.2f} | {min(times):.2f} .. {max(times):.2f} | "
            f"{len(reached)}/{len(runs)} | {epochs} | {ratio} |")


HEADER = ("| schedule | median s to target | range | reached | median epochs | vs constant |\n"
          "|---|---:|---|---:|---:|---:|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    seeds = range(100, 100 + args.seeds)
    started = time.time()
    lines = ["## Schedules", "",
             *machine_lines(f"python3 -m benchmarks.schedule_bench --seeds {args.seeds}"), ""]
    for case in CASES:
        constant = interleaved(case, {"constant": Schedule()}, seeds)["constant"]
        reached = [e for _, e in constant if e is not None]
        horizon = f"{HORIZON_FACTOR * statistics.median(reached):.3g}epochs" if reached \
            else "100epochs"
        shapes = {"constant": Schedule(),
                  **{name: Schedule(name=name, horizon=horizon)
                     for name in ("cosine", "linear", "wsd")}}
        runs = interleaved(case, shapes, seeds)
        base = statistics.median(t for t, _ in runs["constant"])
        lines += [f"**{case.workload}**, target {case.target}, batch {case.batch}, peak LR "
                  f"{case.lr:g}, momentum {case.momentum}; decaying shapes end at {horizon} "
                  f"({HORIZON_FACTOR}x the constant run's median epochs to target); "
                  f"{args.seeds} seeds, interleaved:", "", HEADER,
                  *(row(name, r, base) for name, r in runs.items()), ""]
    warm = interleaved(LARGE, {"no warmup": Schedule(),
                               "5-epoch warmup": Schedule(warmup="5epochs")}, seeds)
    base = statistics.median(t for t, _ in warm["no warmup"])
    lines += [f"**Warmup at a large batch**: {LARGE.workload}, batch {LARGE.batch} (4x the "
              f"predicted best), LR {LARGE.lr:.3g} by the linear rule, momentum "
              f"{LARGE.momentum}, constant after the warmup:", "",
              HEADER.replace("vs constant", "vs no warmup"),
              *(row(name, r, base) for name, r in warm.items()), "",
              f"Budget {BUDGET_S:g} s per run (a miss counts as the budget). "
              f"Took {time.time() - started:.0f} s.", ""]
    write_section("## Schedules", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
