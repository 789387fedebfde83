"""Data-parallel trials against one process at equal global batch; writes
`## Data-parallel trials` into benchmarks/RESULTS.md.

    python3 -m benchmarks.parallel_bench [--workloads mnist1d-cnn,mnist1d-long] [--runs 3]
        [--ranks 2] [--run-budget 150] [--smoke]

Per workload, at the reference recipe's global batch (rounded to the ranks):
1. time per step (the profile's t(B), the gradient all-reduce included for the ranks);
2. time to the built-in's suggested target of `autobatch run` (medians over seeds,
   1 process and N ranks interleaved, A B A B: the machine is shared), with each
   seed's time and steps and the training seconds per step of the runs;
3. the gradient noise scale B_simple from the ranks (each rank's gradient vs their
   all-reduced mean) against one process's two-batch estimate.
The load average before and after is recorded: on a few cores the ranks compete with
each other (and anything else) for them, so communication and contention dominate.
--smoke: one batch size, one 10-step run of one workload, no noise; nothing written.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace

import torch

from autobatch import Budget, RunConfig, load_workload, run
from autobatch.measure import profile
from autobatch.measure.rank_profile import profile_ranks
from autobatch.search.parallel_runner import ParallelRunner
from autobatch.workloads.builtin import BUILTINS
from benchmarks.report import machine_lines, write_section

HEADING = "## Data-parallel trials"
CPU = torch.device("cpu")


def load() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def global_batch(batch: int, ranks: int) -> int:
    return max(ranks, batch // ranks * ranks)


def to_target(workload, config: RunConfig, ranks: int) -> tuple[float, int] | None:
    """(training seconds, optimizer steps) to the target; None when not reached."""
    if ranks == 1:
        result = run(workload, config, device="cpu")
    else:
        result = ParallelRunner(workload.spec, CPU, ranks).run(config, lambda point: False)
    if result.time_to_target_s is None:
        return None
    return result.time_to_target_s, result.steps_to_target


def median_or_none(values: list[tuple[float, int] | None]) -> str:
    """The median time to target, then each seed's time and steps (near a plateau the
    seeds differ by far more than the ranks do: the per-step cost is the steady figure)."""
    reached = [v for v in values if v is not None]
    if not reached:
        return "not reached"
    seeds = ", ".join("-" if v is None else f"{v[0]:.1f} s/{v[1]}" for v in values)
    per_step = statistics.median(s / n for s, n in reached) * 1e3
    return (f"{statistics.median(s for s, _ in reached):.2f} s ({len(reached)}/{len(values)} "
            f"reached; seeds {seeds} steps; {per_step:.1f} ms per step)")


def bench(name: str, runs: int, ranks: int, budget: Budget, smoke: bool) -> list[str]:
    workload = load_workload(name)
    reference = workload.reference
    batch = global_batch(reference.batch_size, ranks)
    target = BUILTINS[name].target
    sizes = [batch] if smoke else sorted({global_batch(b, ranks)
                                          for b in (batch // 2, batch, batch * 2)})
    noise = not smoke
    alone = profile(workload, device="cpu", batch_sizes=sizes, noise=noise)
    together = profile_ranks(workload.spec, ranks, CPU, sizes, noise=noise)
    step = {r.batch_size: r.iter_s for r in alone.rows if r.fits}
    step_n = {r.batch_size: r.iter_s for r in together.rows if r.fits}
    config = RunConfig.of(replace(reference.hparams, batch_size=batch), target=target,
                          budget=budget, seed=0)
    times: dict[int, list[tuple[float, int] | None]] = {1: [], ranks: []}
    for seed in range(runs):
        for n in (1, ranks):  # interleaved
            times[n].append(to_target(workload, replace(config, seed=seed), n))
    lines = [f"| {name} | step time at B={b} | {step.get(b, 0) * 1e3:.1f} ms | "
             f"{step_n.get(b, 0) * 1e3:.1f} ms |" for b in sizes]
    lines.append(f"| {name} | time to {target:g} at B={batch} | {median_or_none(times[1])} | "
                 f"{median_or_none(times[ranks])} |")
    if noise:
        lines.append(f"| {name} | B_simple | {fmt_noise(alone.noise)} | "
                     f"{fmt_noise(together.noise)} |")
    return lines


def fmt_noise(estimate) -> str:
    if estimate is None or estimate.b_simple is None:
        return "not resolved"
    return (f"{estimate.b_simple:.0f} (batches {estimate.b_small} and {estimate.b_big}, "
            f"{estimate.draws} draws)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="mnist1d-cnn,mnist1d-long")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--run-budget", type=float, default=150.0,
                        help="training seconds a run to the target may take")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    names = args.workloads.split(",")[:1] if args.smoke else args.workloads.split(",")
    budget = Budget(steps=10) if args.smoke else Budget(seconds=args.run_budget)
    before = load()
    rows = []
    for name in names:
        rows += bench(name, 1 if args.smoke else args.runs, args.ranks, budget, args.smoke)
    after = load()
    body = "\n".join([
        HEADING, "",
        *machine_lines("python3 -m benchmarks.parallel_bench " + " ".join(sys.argv[1:])),
        f"- Load average (1/5/15 min) before: {before}; after: {after}",
        f"- {args.ranks} gloo ranks on this machine vs 1 process, equal global batch; "
        "times are training seconds (rank 0's clock), medians over seeds", "",
        f"| workload | measure | 1 process | {args.ranks} ranks |",
        "|---|---|---|---|", *rows])
    print(body)
    if not args.smoke:
        write_section(HEADING, body)


if __name__ == "__main__":
    started = time.time()
    main()
    print(f"\n({time.time() - started:.0f} s)", file=sys.stderr)
