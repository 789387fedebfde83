"""autobatch tune vs the ways people pick batch size and LR today, on one workload.

    python3 -m benchmarks.tune_bench [--workload mnist1d-cnn] [--target 0.9] [--seeds 9]
                                     [--grid-budget 10 | --grid-cell 256,0.3,0.9 | --no-grid]
                                     [--core]
                                     [--eval test|val] [--tune-timeout 120]

Comparisons (benchmarks.md), all trained with the same loop to the same target:
1. autobatch's recommendation (one `tune` run, then re-measured from scratch);
2. the workload's reference recipe (MNIST-1D: Adam, LR 1e-2, batch 100);
3. "as large as fits" + LR range test (Lightning's two tuners together: the largest
   power-of-two batch that fits, the LR at the steepest fall of the smoothed loss);
4. folklore: batch 32, LR 0.01; batch 64, LR 0.02 (linear rule from 32);
5. plain Optuna with the same wall-clock budget as autobatch's tune: TPE over
   (batch 8..1024, LR 1e-3..1 log, momentum 0..0.99), objective time to target,
   median pruner on epochs;
6. the best cell of an exhaustive grid: batch 8..1024 x LR {0.01, 0.03, 0.1, 0.3, 1}
   x momentum {0, 0.9}, each cell one run with --grid-budget seconds.
Every configuration is re-measured with --seeds fresh seeds, interleaved
(A B C ... A B C ...), evaluated on the workload's test split (which the tune never
sees; --eval val for the validation split), and reported as the median time to target
(a run that misses the target within --run-budget seconds counts as infinitely slow);
the tune's runner-up is re-measured too, to see how often the winner really is faster.
--core keeps 1, 2, the runner-up and 6. Writes the "## Tune: WORKLOAD" section of
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import optuna

import autobatch.keys as keys
from autobatch import Budget, RunConfig, load_workload, run
from autobatch.config import TuneConfig
from autobatch.measure import lr_range_test, probe
from autobatch.measure.lr_range import smooth
from autobatch.schedule import CONSTANT, Schedule
from autobatch.tuner import tune
from benchmarks.report import machine_lines, write_section

GRID_BATCHES = [8, 16, 32, 64, 128, 256, 512, 1024]
GRID_LRS = [0.01, 0.03, 0.1, 0.3, 1.0]
GRID_MOMENTA = [0.0, 0.9]


@dataclass
class Contender:
    name: str
    batch_size: int
    lr: float
    momentum: float
    optimizer: str | None = None
    schedule: Schedule = CONSTANT
    times: list[float] = field(default_factory=list)  # inf: target missed

    def median(self) -> float:
        return statistics.median(self.times) if self.times else math.inf


def time_to_target(workload, target: float, batch: int, lr: float, momentum: float,
                   optimizer: str | None, budget_s: float, seed: int,
                   schedule: Schedule = CONSTANT) -> float:
    config = RunConfig(batch_size=batch, lr=lr, momentum=momentum, target=target,
                       budget=Budget(seconds=budget_s), seed=seed, optimizer=optimizer,
                       schedule=schedule)
    result = run(workload, config, device="cpu")
    return result.time_to_target_s if result.target_reached else math.inf


def grid(workload, target: float, budget_s: float) -> tuple[Contender, float, int]:
    """Best grid cell, the grid's total wall time, and how many cells reached the target."""
    started = time.perf_counter()
    best, reached = None, 0
    for batch in GRID_BATCHES:
        for lr in GRID_LRS:
            for momentum in GRID_MOMENTA:
                t = time_to_target(workload, target, batch, lr, momentum, None, budget_s, 0)
                reached += math.isfinite(t)
                if best is None or t < best[0]:
                    best = (t, batch, lr, momentum)
    _, batch, lr, momentum = best
    return (Contender("best of grid", batch, lr, momentum),
            time.perf_counter() - started, reached)


def steepest_lr(workload, batch: int) -> float:
    """Lightning's LR finder suggestion: the steepest fall of the smoothed loss."""
    sweep = lr_range_test(workload, batch_size=batch, device="cpu")
    losses = smooth(list(sweep.losses))
    logs = [math.log10(lr) for lr in sweep.lrs]
    slopes = [(losses[i + 1] - losses[i]) / (logs[i + 1] - logs[i])
              for i in range(len(losses) - 1)]
    return sweep.lrs[min(range(len(slopes)), key=slopes.__getitem__)]


def plain_optuna(workload, target: float, timeout_s: float, budget_s: float,
                 storage: str) -> Contender:
    """What a user writes by hand: TPE, time-to-target objective, median pruner on epochs."""
    def objective(trial: optuna.Trial) -> float:
        batch = trial.suggest_categorical("batch_size", GRID_BATCHES)
        lr = trial.suggest_float("lr", 1e-3, 1.0, log=True)
        momentum = trial.suggest_float("momentum", 0.0, 0.99)
        config = RunConfig(batch_size=batch, lr=lr, momentum=momentum, target=target,
                           budget=Budget(seconds=budget_s), seed=trial.number)
        epoch = [0]

        def per_epoch(point) -> bool:
            if int(point.epochs) > epoch[0]:
                epoch[0] = int(point.epochs)
                trial.report(1 - point.metric, step=epoch[0])  # error: lower is better
                return trial.should_prune()
            return False

        result = run(workload, config, device="cpu", on_eval=per_epoch)
        if result.stop_reason == "stopped":
            raise optuna.TrialPruned()
        return result.time_to_target_s if result.target_reached else budget_s * 2

    study = optuna.create_study(storage=storage, direction="minimize",
                                pruner=optuna.pruners.MedianPruner(),
                                sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(objective, timeout=timeout_s)
    p = study.best_params
    return Contender("plain Optuna (same budget)", p["batch_size"], p["lr"], p["momentum"])


def test_split_of(workload):
    """The workload evaluated on its test split, which no tune ever sees."""
    if workload.test_data is None:
        raise SystemExit(f"{workload.name} has no test split: use --eval val")
    return replace(workload, val_data=workload.test_data)


def recommendation_and_runner_up(tuned) -> tuple[Contender, Contender | None]:
    """The recommendation and the tuned candidate the verification ranked next."""
    def contender(name, c) -> Contender:
        hp = c.hparams
        return Contender(name, hp.batch_size, hp.lr, hp.momentum, hp.optimizer, hp.schedule)

    others = [c for c in tuned.candidates if c.tuned and c is not tuned.best and c.runs]
    runner_up = min(others, key=lambda c: (-c.reached_share(), c.median() or math.inf),
                    default=None)
    return (contender("autobatch recommendation", tuned.best),
            contender("autobatch runner-up", runner_up) if runner_up else None)


def verification_seconds(events: list[tuple[float, str]]) -> float | None:
    """From the last event before the first re-measurement to the verdict."""
    kinds = [kind for _, kind in events]
    if "verify" not in kinds or "verdict" not in kinds:
        return None
    first = kinds.index("verify")
    return events[kinds.index("verdict")][0] - events[max(0, first - 1)][0]


def extrapolation(study: optuna.Study) -> tuple[list[float], int, int]:
    """Predicted / measured time to target of every configuration that paused at a rung
    and was continued to the target (the prediction at its last pause), and how many
    trials paused and were continued."""
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    ratios = []
    for trial in trials.values():
        source = trial.user_attrs.get(keys.CONTINUES)
        if not trial.user_attrs.get(keys.TARGET_REACHED) or source is None:
            continue
        predicted = trials[source].user_attrs.get(keys.PREDICTED_TIME_S)
        if predicted:
            ratios.append(predicted / trial.value)
    paused = sum(keys.PAUSED_AT_RUNG in t.user_attrs for t in trials.values())
    continued = sum(keys.CONTINUES in t.user_attrs for t in trials.values())
    return ratios, paused, continued


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="mnist1d-cnn")
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--seeds", type=int, default=9)
    parser.add_argument("--grid-budget", type=float, default=10.0)
    parser.add_argument("--grid-cell", help=(
        "BATCH,LR,MOMENTUM: the best grid cell of an earlier run of this benchmark "
        "(cited, not recomputed)"))
    parser.add_argument("--no-grid", action="store_true", help=(
        "no grid (a long workload's grid costs hours): no comparison with its best cell"))
    parser.add_argument("--core", action="store_true", help=(
        "only the recommendation, its runner-up, the reference recipe and the grid's best"))
    parser.add_argument("--eval", choices=("test", "val"), default="test", help=(
        "the split the re-measured runs are evaluated on (test: never seen by the tune)"))
    parser.add_argument("--tune-timeout", type=float, default=120.0)
    parser.add_argument("--run-budget", type=float, default=30.0,
                        help="training seconds a re-measured run may take")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    workload = load_workload(args.workload)
    judged = workload if args.eval == "val" else test_split_of(workload)
    folder = Path(tempfile.mkdtemp())
    load_before = os.getloadavg()[0]

    events: list[tuple[float, str]] = []
    started = time.perf_counter()

    def on_event(event) -> None:
        events.append((time.perf_counter(), event.name if event.name == "verdict"
                       else event.kind))
        if event.kind == "stage":  # where the tune's time went, for the log
            print(f"{time.perf_counter() - started:7.1f}s {event.name}: {event.message}",
                  file=sys.stderr)

    tuned = tune(workload, TuneConfig(target=args.target, timeout_s=args.tune_timeout,
                                      storage=f"sqlite:///{folder / 'tune.db'}"),
                 device="cpu", on_event=on_event)
    tune_seconds = time.perf_counter() - started
    rec, runner_up = recommendation_and_runner_up(tuned)
    contenders = [rec] + ([runner_up] if runner_up else [])
    print(f"tune: {tune_seconds:.1f}s -> {tuned.best.hparams}", file=sys.stderr)

    ref = workload.reference
    contenders.append(Contender("reference recipe", ref.batch_size, ref.lr, ref.momentum,
                                ref.optimizer, ref.schedule))
    plain_seconds = None
    if not args.core:
        fits = probe(workload, device="cpu").max_batch_size
        largest = 2 ** int(math.log2(fits))
        contenders.append(Contender("largest fits + LR finder", largest,
                                    steepest_lr(workload, largest), 0.9))
        contenders.append(Contender("folklore: batch 32, LR 0.01", 32, 0.01, 0.9))
        contenders.append(Contender("folklore: batch 64, LR 0.02 (linear)", 64, 0.02, 0.9))
        started = time.perf_counter()
        contenders.append(plain_optuna(workload, args.target, tune_seconds, 30.0,
                                       f"sqlite:///{folder / 'plain.db'}"))
        plain_seconds = time.perf_counter() - started
    if args.no_grid:
        best_cell, grid_seconds, grid_reached = None, None, None
    elif args.grid_cell:
        batch, lr, momentum = args.grid_cell.split(",")
        best_cell = Contender("best of grid (earlier run)", int(batch), float(lr),
                              float(momentum))
        grid_seconds, grid_reached = None, None
    else:
        best_cell, grid_seconds, grid_reached = grid(workload, args.target, args.grid_budget)
        print(f"grid: {grid_seconds:.0f}s, {grid_reached} cells reached", file=sys.stderr)
    if best_cell is not None:
        contenders.append(best_cell)

    for seed in range(1, args.seeds + 1):
        for c in contenders:
            c.times.append(time_to_target(judged, args.target, c.batch_size, c.lr,
                                          c.momentum, c.optimizer, args.run_budget,
                                          1000 + seed, c.schedule))
            print(f"seed {seed} {c.name}: {c.times[-1]:.3f}s", file=sys.stderr)
    load_after = os.getloadavg()[0]
    write_section(f"## Tune: {args.workload}", "\n".join(summary(
        args, tuned, contenders, rec, runner_up, best_cell, tune_seconds, events,
        grid_seconds, grid_reached, plain_seconds, (load_before, load_after),
        f"sqlite:///{folder / 'tune.db'}")))


def summary(args, tuned, contenders, rec, runner_up, best_cell, tune_seconds, events,
            grid_seconds, grid_reached, plain_seconds, loads, storage: str) -> list[str]:
    grid_best = best_cell.median() if best_cell is not None else None
    recommended = rec.median()
    one_best_run = min(grid_best or math.inf, recommended)
    rows = ["| configuration | batch | LR | momentum | schedule | median s | min..max s "
            "| vs grid best |", "|---|---:|---:|---:|---|---:|---|---:|"]
    for c in contenders:
        finite = [t for t in c.times if math.isfinite(t)]
        spread = f"{min(finite):.2f}..{max(finite):.2f}" if finite else "-"
        missed = len(c.times) - len(finite)
        rows.append(f"| {c.name}{f' ({missed} missed)' if missed else ''} | {c.batch_size} "
                    f"| {c.lr:.3g} | {c.momentum:.3g} | {c.schedule} | {c.median():.3f} | {spread} "
                    + (f"| {c.median() / grid_best:.2f}x |" if grid_best else "| - |"))
    ref_median = next(c for c in contenders if c.name == "reference recipe").median()
    verify_s = verification_seconds(events)
    runs = sum(len(c.runs) for c in tuned.candidates)
    verdict = tuned.judged()
    lines = [
        *machine_lines(" ".join(["python3 -m benchmarks.tune_bench", *sys.argv[1:]])),
        f"- Load average {loads[0]:.2f} before, {loads[1]:.2f} after (run alone).",
        f"- Workload {args.workload}, target {args.target}; the tune saw the training and "
        f"validation splits only; every configuration re-measured on the "
        f"**{args.eval}** split with {args.seeds} fresh seeds, interleaved; medians.",
        "", *rows, "",
        (f"- Quality: T(recommended) / T(grid best) = **{recommended / grid_best:.2f}** "
         "(goal <= 1.0)" if grid_best else "- Quality against a grid: not measured "
         "(--no-grid)."),
        f"- Speed-up for the user: T(reference) / T(recommended) = "
        f"**{ref_median / recommended:.2f}x** (goal >= 3x)",
        f"- Tuning cost: {tune_seconds:.1f} s = **{tune_seconds / one_best_run:.0f}x** one "
        f"best run; break-even (tune / reference run) {tune_seconds / ref_median:.1f}.",
        f"- Verification: {runs} re-measured runs"
        + (f" in {verify_s:.1f} s ({verify_s / tune_seconds:.0%} of the tune)" if verify_s
           else "") + f"; verdict `{verdict.verdict}`: {verdict.reason}.",
    ]
    if runner_up is not None:
        wins = sum(a < b for a, b in zip(rec.times, runner_up.times))
        lines.append(f"- Winner vs runner-up on the fresh seeds: faster on **{wins} of "
                     f"{args.seeds}** (median ratio {runner_up.median() / recommended:.2f}).")
    if grid_seconds is not None:
        lines.append(f"- Grid: {grid_seconds:.0f} s, {grid_reached} of "
                     f"{len(GRID_BATCHES) * len(GRID_LRS) * len(GRID_MOMENTA)} cells reached "
                     f"the target within {args.grid_budget:g} s.")
    if plain_seconds is not None:
        lines.append(f"- Plain Optuna was given the same {plain_seconds:.0f} s.")
    if tuned.first_model_s is not None:
        lines.append(f"- First model at the target after {tuned.first_model_s:.0f} s of the "
                     f"tune: first-model break-even **{tuned.first_model_s / ref_median:.2f}** "
                     "(goal <= 1.0).")
    study = optuna.load_study(study_name=tuned.study.name, storage=storage)
    ratios, paused, continued = extrapolation(study)
    lines.append(f"- Rungs: {paused} trials paused, {continued} continued from a checkpoint"
                 + (f"; predicted / measured time to target at the last pause: median "
                    f"{statistics.median(ratios):.2f}, within +-25% for "
                    f"{sum(0.75 <= r <= 1.25 for r in ratios)} of {len(ratios)}"
                    if ratios else "") + ".")
    lines.append(f"- Prediction before any trial: B* = {tuned.prior['b_star']:.0f} "
                 f"(B_sat {tuned.prior['b_sat']:.0f})"
                 + (f"; grid best batch {best_cell.batch_size}." if best_cell else "."))
    return [f"## Tune: {args.workload}", "", *lines]


if __name__ == "__main__":
    main()
