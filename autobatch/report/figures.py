"""The page's pictures as PNG bytes: time to target against batch size, the LR x batch map,
the validation curves, the memory model, and the throughput profile of the prior."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from optuna.trial import FrozenTrial, TrialState

import autobatch.keys as keys
from autobatch.hyperparams import Hyperparams
from autobatch.measure import ProfileResult
from autobatch.report.canvas import plain_log_y, png
from autobatch.report.facts import GIB, best_per_batch, fmt_gib
from autobatch.report.plots import render_profile
from autobatch.report.recommendation import recommended_trial, runs_words
from autobatch.schedule import DEFAULT_COOLDOWN, Schedule
from autobatch.search import reached_trials

TARGET_COLOR = "#d62728"
BEST_COLOR = "#1f77b4"
SIZE, DPI = (11, 4.6), 100


def _log2_batches(ax: Any, batches: Sequence[int], labels: Sequence[str] | None = None) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(batches))
    ax.set_xticklabels(labels or [str(b) for b in batches])
    ax.minorticks_off()
    ax.set_xlim(min(batches) / 1.5, max(batches) * 1.5)


def _recipes(trials: Iterable[FrozenTrial]) -> dict[int, Hyperparams]:
    """Each trial's recipe by trial number, for the trials that stored one."""
    return {t.number: r for t in trials if (r := Hyperparams.stored(t.user_attrs)) is not None}


def time_vs_batch(trials: Sequence[FrozenTrial], rec: dict[str, Any] | None,
                  b_star: float | None) -> bytes:
    recipes = _recipes(trials)
    done = reached_trials(trials)
    batches = sorted({r.batch_size for r in recipes.values()})

    def batch(trial: FrozenTrial) -> int:
        return recipes[trial.number].batch_size

    def draw(fig: Any) -> None:
        ax = fig.subplots()
        ax.scatter([batch(t) for t in done], [t.value for t in done],
                   color="#aaaaaa", s=22, label="one trial", zorder=2)
        best = {b: min(t.value for t in done if batch(t) == b)
                for b in batches if any(batch(t) == b for t in done)}
        ax.plot(list(best), list(best.values()), "o-", color=BEST_COLOR, lw=2,
                label="best per batch", zorder=3)
        # Verification re-measures with fresh seeds, so its medians sit on another
        # footing than the study's single runs: drawn apart and labelled as such.
        for tuned, label in ((True, "best trials"), (False, "comparisons")):
            group = [c for c in (rec or {}).get("candidates", [])
                     if c["tuned"] == tuned and c["median_s"]]
            if group:
                ax.plot([Hyperparams.from_dict(c).batch_size for c in group],
                        [c["median_s"] for c in group],
                        "*" if tuned else "D", ms=13 if tuned else 9, ls="none", mfc="none",
                        mec="#ff7f0e" if tuned else "#555555", mew=2, zorder=4,
                        label=f"{label}, re-measured (median)")
            for cand in group if not tuned else []:
                ax.annotate(cand["name"], (Hyperparams.from_dict(cand).batch_size,
                                           cand["median_s"]),
                            textcoords="offset points", xytext=(8, -3), fontsize=8)
        if rec is not None and rec.get("expected_time_to_target_s"):
            # At the time the recommendation promises: the re-measured median, not
            # its trial's single study run (drawn grey above, like every trial).
            number = recommended_trial(rec)
            ax.plot([Hyperparams.from_dict(rec).batch_size],
                    [rec["expected_time_to_target_s"]], "*", color="#ff7f0e", ms=18,
                    mec="black", zorder=5, label="recommended" + (
                        f": trial {number}" if number is not None else "")
                    + f" ({runs_words(rec)})")
        if b_star and batches and min(batches) / 2 <= b_star <= max(batches) * 2:
            ax.axvline(b_star, color="#9467bd", ls="--", label=f"predicted B* = {b_star:.0f}")
        counts = [f"{b}\n{sum(batch(t) == b for t in done)}/"
                  f"{sum(r.batch_size == b for r in recipes.values())} reached"
                  for b in batches]
        if batches:
            _log2_batches(ax, batches, counts)
        ax.set_yscale("log")
        plain_log_y(ax.yaxis)
        ax.set_xlabel("batch size (trials that reached the target / all trials)")
        ax.set_ylabel("time to target (s)")
        ax.set_title("Time to target vs batch size")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1))

    return png(draw, SIZE, DPI)


def lr_batch_map(trials: Sequence[FrozenTrial], rec: dict[str, Any] | None) -> bytes:
    from matplotlib.colors import LogNorm

    recipes = _recipes(t for t in trials if t.state.is_finished())
    tried = [t for t in trials if t.number in recipes]
    done = reached_trials(tried)
    batches = sorted({r.batch_size for r in recipes.values()})

    def draw(fig: Any) -> None:
        ax = fig.subplots()
        slow = [t for t in tried if t not in done]
        groups = (
            ("pruned", "x", [t for t in slow if t.state == TrialState.PRUNED]),
            ("target not reached", "o", [t for t in slow if t.state == TrialState.COMPLETE]),
            ("failed", "s", [t for t in slow if t.state == TrialState.FAIL]),
        )
        for label, marker, group in groups:
            if group:
                style = ({"c": "#999999"} if marker == "x"
                         else {"facecolors": "none", "edgecolors": "#999999"})
                ax.scatter([recipes[t.number].batch_size for t in group],
                           [recipes[t.number].lr for t in group], marker=marker, s=40,
                           label=label, zorder=2, **style)
        if done:
            values = [t.value for t in done]
            low, high = min(values), max(values)
            points = ax.scatter([recipes[t.number].batch_size for t in done],
                                [recipes[t.number].lr for t in done], c=values, s=80,
                                cmap="viridis_r", edgecolors="black", linewidths=0.5,
                                norm=LogNorm(low, high if high > low else low * 1.01),
                                label="reached the target", zorder=3)
            bar = fig.colorbar(points, ax=ax, label="time to target (s), darker is slower")
            plain_log_y(bar.ax.yaxis)
        if rec is not None:
            chosen = Hyperparams.from_dict(rec)
            ax.plot([chosen.batch_size], [chosen.lr], "*", color="#ff7f0e", ms=20,
                    mec="black", mfc="none", mew=2, zorder=4, label="recommended")
        if batches:
            _log2_batches(ax, batches)
        ax.set_yscale("log")
        plain_log_y(ax.yaxis)
        ax.set_xlabel("batch size")
        ax.set_ylabel("learning rate")
        ax.set_title("Learning rate x batch size: time to target per trial")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=4)

    return png(draw, SIZE, DPI)


def curves(trials: Sequence[FrozenTrial], target: float | None) -> bytes:
    best = best_per_batch(trials)

    def draw(fig: Any) -> None:
        import matplotlib.pyplot as plt

        ax = fig.subplots()
        colors = plt.get_cmap("viridis")
        for i, (batch, trial) in enumerate(best.items()):
            points = trial.user_attrs[keys.CURVE]
            outcome = (f"{trial.value:.3g} s" if trial in reached_trials([trial])
                       else keys.reason(trial.user_attrs) or "not reached")
            ax.plot([p[0] for p in points], [p[1] for p in points], ".-",
                    color=colors(i / max(len(best) - 1, 1)), lw=1.8,
                    label=f"batch {batch}: trial {trial.number}, {outcome}")
        if target is not None:
            ax.axhline(target, color=TARGET_COLOR, ls="--", label=f"target {target:g}")
        ax.set_xlabel("training seconds (evaluation excluded)")
        ax.set_ylabel("validation metric")
        ax.set_title("Validation metric vs training time, best trial per batch")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1))

    return png(draw, SIZE, DPI)


def resolved_schedule(rec: dict[str, Any]) -> Schedule | None:
    """The recommendation's schedule in optimizer steps, where the result file resolved
    it (a study's best trial alone does not know its steps per epoch)."""
    data = rec.get("schedule")
    if not isinstance(data, dict) or "warmup_steps" not in data:
        return None
    horizon = data.get("horizon_steps")
    return Schedule(name=data["name"], warmup=f"{data['warmup_steps']}steps",
                    horizon=None if horizon is None else f"{horizon}steps",
                    cooldown=data.get("cooldown", DEFAULT_COOLDOWN))


def lr_schedule(rec: dict[str, Any], schedule: Schedule) -> bytes:
    """The recommended LR against the optimizer step, as the trials applied it."""
    end = schedule.horizon_steps or max(4 * schedule.warmup_steps, 100)
    steps = list(range(end + 1))

    def draw(fig: Any) -> None:
        ax = fig.subplots()
        ax.plot(steps, [rec["lr"] * schedule.lr_at(k) for k in steps], color=BEST_COLOR,
                lw=2, label=str(schedule))
        if schedule.warmup_steps:
            ax.axvline(schedule.warmup_steps, color="#aaaaaa", ls=":", label="end of warmup")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("learning rate")
        ax.set_title(f"Recommended LR schedule (peak {rec['lr']:.4g}, batch "
                     f"{rec['batch_size']})")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1))

    return png(draw, SIZE, DPI)


def memory_model(probe: dict[str, Any]) -> bytes:
    import numpy as np

    def draw(fig: Any) -> None:
        ax = fig.subplots()
        fits = [a for a in probe["attempts"] if a["peak_bytes"] is not None]
        ooms = [a for a in probe["attempts"] if a["peak_bytes"] is None]
        sizes = [a["batch_size"] for a in probe["attempts"]]
        peak = max([a["peak_bytes"] for a in fits], default=probe["budget_bytes"])
        # A budget far above every measurement would flatten them into one line.
        show_budget = probe["budget_bytes"] < 3 * peak or ooms
        top = (max(peak, probe["budget_bytes"]) if show_budget else peak) / GIB
        ax.plot([a["batch_size"] for a in fits], [a["peak_bytes"] / GIB for a in fits], "o",
                color=BEST_COLOR, ms=8, label="measured peak (fits)", zorder=3)
        if ooms:
            ax.plot([a["batch_size"] for a in ooms], [top * 1.02] * len(ooms), "X",
                    color=TARGET_COLOR, ms=11, label="out of memory", zorder=3)
        if probe.get("bytes_per_sample") is not None and probe.get("fixed_bytes") is not None:
            grid = np.array([0, max(sizes)])
            ax.plot(grid, (probe["fixed_bytes"] + probe["bytes_per_sample"] * grid) / GIB,
                    "-", color="#555555", label="memory model (least squares)")
        budget = (f"budget {fmt_gib(probe['budget_bytes'])} "
                  f"(usable x {1 - probe['headroom']:.2g})")
        if show_budget:
            ax.axhline(probe["budget_bytes"] / GIB, color=TARGET_COLOR, ls="--", label=budget)
        else:
            ax.plot([], [], " ", label=f"{budget}: far above, not drawn")
        ax.axvline(probe["max_batch_size"], color="#2ca02c", ls=":",
                   label=f"largest batch that fits: {probe['max_batch_size']}")
        ax.set_xlim(0, max(sizes) * 1.05)  # linear: the model is a straight line
        ax.set_ylim(0, top * 1.1)
        ax.set_xlabel("batch size")
        ax.set_ylabel("peak memory (GiB)")
        ax.set_title(f"Memory model: {probe['device']['name']}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1))

    return png(draw, SIZE, DPI)


def profile_png(prior: dict[str, Any]) -> bytes:
    """The throughput profile picture of `autobatch profile --plot`, from the prior."""
    return render_profile(ProfileResult.from_dict(prior["profile"]))
