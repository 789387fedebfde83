"""A tuned study as one self-contained HTML page, and the facts the dashboard note shares.

The page needs no server and no network: pictures are inline PNG data URIs. It shows
time to target against batch size (best per batch), an LR x batch map of time to
target, validation metric against training seconds of the best trial per batch, the
throughput profile and the memory model from the prior, the recommendation beside the
reference recipe, and every trial with its state and prune reason.

Everything comes from the study: trials and their user attributes (see study.py), the
prior (keys.PRIOR) and the verified recommendation that dashboard.publish stores as
keys.RESULT (the best.json document). Without it the study's best trial stands in.
"""

from __future__ import annotations

import base64
import html
import io
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

import autobatch.keys as keys
from autobatch.errors import ConfigError
from autobatch.files import write_atomic
from autobatch.measure import ProfileResult
from autobatch.report.plots import plot_profile
from autobatch.search import reached_trials
from autobatch.storage import mask_url, open_storage, storage_file

GIB = 1024**3
TARGET_COLOR = "#d62728"
BEST_COLOR = "#1f77b4"
Facts = list[tuple[str, str]]


# ---------------------------------------------------------------- loading


def load_study(url: str, study_name: str | None) -> optuna.Study:
    """The named study, or the only one in the storage; ConfigError naming the choices."""
    path = storage_file(url)
    if path is not None and not path.is_file():
        raise ConfigError(f"no study database at {str(path)!r}; pass --storage or run "
                          "`autobatch tune` first")
    storage = open_storage(url)
    names = sorted(optuna.get_all_study_names(storage))
    if study_name is None:
        if len(names) != 1:
            found = ", ".join(names) if names else "none"
            raise ConfigError(f"{mask_url(url)} holds {len(names)} studies ({found}); "
                              "choose one with --study-name")
        study_name = names[0]
    elif study_name not in names:
        raise ConfigError(f"no study named {study_name!r} in {mask_url(url)}; studies: "
                          + (", ".join(names) or "none"))
    return optuna.load_study(study_name=study_name, storage=storage)


def best_per_batch(trials: Sequence[FrozenTrial]) -> dict[int, FrozenTrial]:
    """Per batch size: the fastest trial to the target, else the one that came closest."""
    best: dict[int, FrozenTrial] = {}
    for trial in trials:
        batch = trial.user_attrs.get("batch_size")
        if batch is None or not trial.user_attrs.get("curve"):
            continue
        if batch not in best or _rank(trial) < _rank(best[batch]):
            best[batch] = trial
    return dict(sorted(best.items()))


def _rank(trial: FrozenTrial) -> tuple[int, float]:
    if trial in reached_trials([trial]):
        return (0, trial.value)
    return (1, -(trial.user_attrs.get("best_metric") or 0.0))


# ---------------------------------------------------------------- facts (note and page)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g} s"


def _bytes(value: float | None) -> str:
    return "-" if value is None else f"{value / GIB:.3g} GiB"


def probe_facts(probe: dict[str, Any]) -> Facts:
    """The memory probe in a few lines: what fits, why it stops, the memory model."""
    facts = [
        ("largest batch that fits", f"{probe['max_batch_size']} (limited by "
                                    f"{probe['limited_by'].replace('_', ' ')})"),
        ("device", f"{probe['device']['name']} ({probe['device']['type']}), "
                   f"{probe['isolation']}"),
        ("peak memory at that batch", f"{_bytes(probe['peak_bytes'])} of a "
                                      f"{_bytes(probe['budget_bytes'])} budget "
                                      f"({probe['headroom']:.0%} headroom)"),
    ]
    if probe.get("bytes_per_sample") is not None and probe.get("fixed_bytes") is not None:
        r2 = f", R² {probe['fit_r2']:.3f}" if probe.get("fit_r2") is not None else ""
        facts.append(("memory model", f"{_bytes(probe['fixed_bytes'])} + "
                      f"{probe['bytes_per_sample'] / 1024**2:.3g} MiB × batch{r2}"))
    ooms = [a["batch_size"] for a in probe["attempts"] if a["outcome"] != "fit"]
    facts.append(("attempts", f"{len(probe['attempts'])} in {probe['seconds']:.1f} s"
                  + (f"; did not fit: {', '.join(map(str, sorted(ooms)))}" if ooms else "")))
    return facts


def _fmt(value: float | None, spec: str) -> str:
    """A number formatted, or '-' where it was not measured (None)."""
    return "-" if value is None else format(value, spec)


def profile_facts(prior: dict[str, Any]) -> Facts:
    """The throughput profile and the prediction it makes."""
    prof = prior["profile"]
    facts: Facts = []
    if prof.get("alpha") is not None and prof.get("beta") is not None:
        facts.append(("time per step t(B)", f"{prof['alpha'] * 1e3:.3g} ms + "
                      f"{prof['beta'] * 1e6:.3g} µs × B (fit error "
                      f"{_fmt(prof.get('fit_error'), '.0%')})"))
    b_sat = prof.get("b_sat")
    facts.append(("B_sat = α/β", f"{b_sat:.0f}" if b_sat else "- (no saturation measured)"))
    facts.append(("throughput knee", str(prof.get("knee") or "-")))
    noise = prof.get("noise") or {}
    if noise.get("b_simple"):
        facts.append(("noise scale B_simple", f"{noise['b_simple']:.0f} "
                      f"[{_fmt(noise.get('low'), '.0f')}, {_fmt(noise.get('high'), '.0f')}] "
                      f"({noise['level']:.0%})"))
    else:
        facts.append(("noise scale B_simple", "- (not resolved)"))
    facts.append(("predicted best batch B*", f"{prior['b_star']:.0f}"))
    space = prior["space"]
    lr = (f"LR {space['lr_range'][0]:.3g} .. {space['lr_range'][1]:.3g} at batch "
          f"{space['anchor_batch']}" if space.get("lr_range") else f"LR {space['lr_fixed']:.3g}")
    facts.append(("search space", f"batches {', '.join(map(str, space['batch_sizes']))}; {lr}"))
    return facts


def recommendation(data: dict[str, Any] | None, trials: Sequence[FrozenTrial]
                   ) -> dict[str, Any] | None:
    """The verified recommendation (best.json), else the study's best trial, else None."""
    if data is not None:
        return data
    done = reached_trials(trials)
    if not done:
        return None
    best = min(done, key=lambda t: t.value)
    attrs = best.user_attrs
    return {"batch_size": attrs["batch_size"], "lr": attrs["lr"],
            "momentum": attrs["momentum"], "expected_time_to_target_s": best.value,
            "spread": {"runs": 0}, "candidates": [], "trial_number": best.number}


def _is_recommended(cand: dict[str, Any], rec: dict[str, Any]) -> bool:
    return cand["tuned"] and (cand["batch_size"], cand["lr"], cand["momentum"]) == (
        rec["batch_size"], rec["lr"], rec["momentum"])


def recommended_trial(rec: dict[str, Any]) -> int | None:
    """The study trial the recommendation came from."""
    if "trial_number" in rec:
        return rec["trial_number"]
    return next((c["trial_number"] for c in rec["candidates"] if _is_recommended(c, rec)), None)


def comparison(rec: dict[str, Any]) -> tuple[str, list[list[str]]]:
    """A headline sentence and one row per candidate: name, batch, LR, momentum, median
    time to target, runs reached, speed relative to the reference recipe."""
    spread = rec.get("spread") or {}
    how = (f"median of {spread['runs']} runs" if spread.get("runs")
           else "one study trial, not re-measured")
    headline = (f"batch {rec['batch_size']}, LR {rec['lr']:.4g}, momentum "
                f"{rec['momentum']:.3g}: {_seconds(rec['expected_time_to_target_s'])} "
                f"to the target ({how})")
    ref = next((c for c in rec["candidates"] if c["name"] == "reference recipe"), None)
    best = rec["expected_time_to_target_s"]
    if ref is None:
        headline += "; no reference recipe was measured"
    elif ref["median_s"] and best:
        headline += (f"; {ref['median_s'] / best:.2g}x as fast as the reference recipe "
                     f"(batch {ref['batch_size']}, LR {ref['lr']:.3g}: "
                     f"{_seconds(ref['median_s'])})")
    else:
        headline += (f"; the reference recipe (batch {ref['batch_size']}, LR "
                     f"{ref['lr']:.3g}) reached the target in {ref['reached']} of "
                     f"{len(ref['runs'])} runs")
    rows = []
    for cand in rec["candidates"]:
        ratio = "-"
        if ref is not None and ref["median_s"] and cand["median_s"]:
            ratio = f"{ref['median_s'] / cand['median_s']:.2g}x"
        rows.append([cand["name"] + (" (recommended)" if _is_recommended(cand, rec) else ""),
                     str(cand["batch_size"]), f"{cand['lr']:.4g}", f"{cand['momentum']:.3g}",
                     _seconds(cand["median_s"]), f"{cand['reached']}/{len(cand['runs'])}",
                     ratio])
    return headline, rows


COMPARISON_HEADER = ["configuration", "batch", "LR", "momentum", "median time to target",
                     "reached", "speed vs reference"]


# ---------------------------------------------------------------- figures


def _png(draw: Callable[[Any], None], size: tuple[float, float] = (11, 4.6)) -> bytes:
    """Run draw(figure) on a fresh figure and return it as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=size, constrained_layout=True)
    try:
        draw(fig)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()
    finally:
        plt.close(fig)


def _plain_log_y(axis: Any) -> None:
    """Label a log axis 0.2, 0.5, 1, 2 instead of 2 x 10^-1 (read at a glance)."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _log2_batches(ax: Any, batches: Sequence[int], labels: Sequence[str] | None = None) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(batches))
    ax.set_xticklabels(labels or [str(b) for b in batches])
    ax.minorticks_off()
    ax.set_xlim(min(batches) / 1.5, max(batches) * 1.5)


def time_vs_batch(trials: Sequence[FrozenTrial], rec: dict[str, Any] | None,
                  b_star: float | None) -> bytes:
    done = reached_trials(trials)
    batches = sorted({t.user_attrs["batch_size"] for t in trials if "batch_size" in t.user_attrs})

    def draw(fig: Any) -> None:
        ax = fig.subplots()
        ax.scatter([t.user_attrs["batch_size"] for t in done], [t.value for t in done],
                   color="#aaaaaa", s=22, label="one trial", zorder=2)
        best = {b: min(t.value for t in done if t.user_attrs["batch_size"] == b)
                for b in batches if any(t.user_attrs["batch_size"] == b for t in done)}
        ax.plot(list(best), list(best.values()), "o-", color=BEST_COLOR, lw=2,
                label="best per batch", zorder=3)
        # Verification re-measures with fresh seeds, so its medians sit on another
        # footing than the study's single runs: drawn apart and labelled as such.
        for tuned, label in ((True, "best trials"), (False, "comparisons")):
            group = [c for c in (rec or {}).get("candidates", [])
                     if c["tuned"] == tuned and c["median_s"]]
            if group:
                ax.plot([c["batch_size"] for c in group], [c["median_s"] for c in group],
                        "*" if tuned else "D", ms=13 if tuned else 9, ls="none", mfc="none",
                        mec="#ff7f0e" if tuned else "#555555", mew=2, zorder=4,
                        label=f"{label}, re-measured (median)")
            for cand in group if not tuned else []:
                ax.annotate(cand["name"], (cand["batch_size"], cand["median_s"]),
                            textcoords="offset points", xytext=(8, -3), fontsize=8)
        number = recommended_trial(rec) if rec else None
        rec_trial = next((t for t in done if t.number == number), None)
        if rec_trial is not None:
            ax.plot([rec_trial.user_attrs["batch_size"]], [rec_trial.value], "*",
                    color="#ff7f0e", ms=18, mec="black", zorder=5,
                    label=f"recommended: trial {rec_trial.number}")
        if b_star and batches and min(batches) / 2 <= b_star <= max(batches) * 2:
            ax.axvline(b_star, color="#9467bd", ls="--", label=f"predicted B* = {b_star:.0f}")
        counts = [f"{b}\n{sum(t.user_attrs.get('batch_size') == b for t in done)}/"
                  f"{sum(t.user_attrs.get('batch_size') == b for t in trials)} reached"
                  for b in batches]
        if batches:
            _log2_batches(ax, batches, counts)
        ax.set_yscale("log")
        _plain_log_y(ax.yaxis)
        ax.set_xlabel("batch size (trials that reached the target / all trials)")
        ax.set_ylabel("time to target (s)")
        ax.set_title("Time to target vs batch size")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1))

    return _png(draw)


def lr_batch_map(trials: Sequence[FrozenTrial], rec: dict[str, Any] | None) -> bytes:
    from matplotlib.colors import LogNorm

    tried = [t for t in trials if "lr" in t.user_attrs and t.state.is_finished()]
    done = reached_trials(tried)
    batches = sorted({t.user_attrs["batch_size"] for t in tried})

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
                ax.scatter([t.user_attrs["batch_size"] for t in group],
                           [t.user_attrs["lr"] for t in group], marker=marker, s=40,
                           label=label, zorder=2, **style)
        if done:
            values = [t.value for t in done]
            low, high = min(values), max(values)
            points = ax.scatter([t.user_attrs["batch_size"] for t in done],
                                [t.user_attrs["lr"] for t in done], c=values, s=80,
                                cmap="viridis_r", edgecolors="black", linewidths=0.5,
                                norm=LogNorm(low, high if high > low else low * 1.01),
                                label="reached the target", zorder=3)
            bar = fig.colorbar(points, ax=ax, label="time to target (s), darker is slower")
            _plain_log_y(bar.ax.yaxis)
        if rec is not None:
            ax.plot([rec["batch_size"]], [rec["lr"]], "*", color="#ff7f0e", ms=20,
                    mec="black", mfc="none", mew=2, zorder=4, label="recommended")
        if batches:
            _log2_batches(ax, batches)
        ax.set_yscale("log")
        _plain_log_y(ax.yaxis)
        ax.set_xlabel("batch size")
        ax.set_ylabel("learning rate")
        ax.set_title("Learning rate x batch size: time to target per trial")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=4)

    return _png(draw)


def curves(trials: Sequence[FrozenTrial], target: float | None) -> bytes:
    best = best_per_batch(trials)

    def draw(fig: Any) -> None:
        import matplotlib.pyplot as plt

        ax = fig.subplots()
        colors = plt.get_cmap("viridis")
        for i, (batch, trial) in enumerate(best.items()):
            points = trial.user_attrs["curve"]
            outcome = (f"{trial.value:.3g} s" if trial in reached_trials([trial])
                       else trial.user_attrs.get("prune_reason") or "not reached")
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

    return _png(draw)


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
        budget = (f"budget {_bytes(probe['budget_bytes'])} "
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

    return _png(draw)


def profile_png(prior: dict[str, Any]) -> bytes:
    """The throughput profile picture of autobatch.report.plots, as PNG bytes."""
    with tempfile.TemporaryDirectory() as folder:
        return plot_profile(ProfileResult.from_dict(prior["profile"]),
                            Path(folder) / "profile.png").read_bytes()


# ---------------------------------------------------------------- the page


def _table(header: Sequence[str] | None, rows: Sequence[Sequence[str]], cls: str = "",
           row_classes: Sequence[str] | None = None) -> str:
    head = ("<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header)
            + "</tr></thead>") if header else ""
    classes = row_classes or [""] * len(rows)
    body = "".join(f'<tr class="{c}">' + "".join(f"<td>{html.escape(v)}</td>" for v in row)
                   + "</tr>" for row, c in zip(rows, classes))
    return f'<table class="{cls}">{head}<tbody>{body}</tbody></table>'


def _figure(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _attr(attrs: dict[str, Any], key: str, fmt: str) -> str:
    return format(attrs[key], fmt) if attrs.get(key) is not None else "-"


def trial_rows(trials: Sequence[FrozenTrial]) -> list[list[str]]:
    rows = []
    for t in trials:
        a = t.user_attrs
        if t in reached_trials([t]):
            outcome = f"{t.value:.4g} s"
        elif t.state == TrialState.COMPLETE:
            outcome = f"not reached ({t.value:.4g}, censored)"
        else:
            outcome = "-"
        rows.append([str(t.number), t.state.name.lower(), _attr(a, "batch_size", "d"),
                     _attr(a, "lr", ".4g"), _attr(a, "momentum", ".3g"), outcome,
                     _attr(a, "best_metric", ".4f"), _attr(a, "steps", "d"),
                     _attr(a, "samples_per_s", ",.0f"), _attr(a, "train_seconds", ".3g"),
                     a.get("stop_reason", "-"),
                     a.get("prune_reason") or a.get("fail_reason") or ""])
    return rows


TRIAL_HEADER = ["#", "state", "batch", "LR", "momentum", "time to target", "best metric",
                "steps", "samples/s", "train s", "stop", "prune / fail reason"]

STYLE = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;margin:0;
background:#f6f7f9}main{max-width:1100px;margin:0 auto;padding:24px 28px 60px}
h1{margin:0 0 4px;font-size:26px}h2{margin:34px 0 10px;font-size:20px;
border-bottom:1px solid #ddd;padding-bottom:4px}.sub{color:#666;margin:0 0 18px}
.card{background:#fff;border:1px solid #dde;border-radius:8px;padding:14px 18px;margin:12px 0}
.rec{border-left:6px solid #ff7f0e;font-size:17px}.rec b{font-size:20px}
img{max-width:100%;background:#fff;border:1px solid #e3e3e3;border-radius:6px}
table{border-collapse:collapse;background:#fff;width:100%;font-size:13.5px;margin:8px 0}
th,td{border:1px solid #e1e1e1;padding:4px 8px;text-align:left}th{background:#eef1f5}
tbody tr:nth-child(even){background:#fafbfc}table.facts td:first-child{width:28%;color:#555}
td:nth-child(2){white-space:nowrap}.muted{color:#777}tr.complete td:nth-child(2){color:#1a7f37}
tr.pruned td:nth-child(2){color:#b35900}tr.fail td:nth-child(2){color:#c62828;font-weight:600}
"""


def render_html(study: optuna.Study, storage_label: str) -> str:
    """The whole report page for `study`; storage_label must already be masked."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]
    attrs = study.user_attrs
    prior = attrs.get(keys.PRIOR)
    contract = attrs.get(keys.CONTRACT) or {}
    rec = recommendation(attrs.get(keys.RESULT), trials)
    target = contract.get("target") or (rec or {}).get("target")
    workload = contract.get("workload") or (rec or {}).get("workload") or "?"
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    counts = ", ".join(f"{n} {state}" for state, n in states.items())
    parts = [f"<h1>{html.escape(study.study_name)}</h1>",
             f'<p class="sub">workload <b>{html.escape(workload)}</b> · target '
             f"{target if target is not None else '-'} · objective time_to_target_s · "
             f"{len(trials)} trials ({html.escape(counts)})"
             f" · storage {html.escape(storage_label)}</p>",
             "<h2>Recommendation</h2>"]
    if rec is None:
        parts.append('<div class="card rec">No trial has reached the target yet.</div>')
    else:
        headline, rows = comparison(rec)
        parts.append(f'<div class="card rec"><b>{html.escape(headline.split(":")[0])}</b>:'
                     f"{html.escape(headline.split(':', 1)[1])}</div>")
        if rows:
            parts.append(_table(COMPARISON_HEADER, rows))
    if trials:
        b_star = prior["b_star"] if prior else None
        parts += ["<h2>Time to target vs batch size</h2>",
                  _figure(time_vs_batch(trials, rec, b_star), "time to target vs batch size"),
                  "<h2>Learning rate x batch size</h2>",
                  _figure(lr_batch_map(trials, rec), "LR x batch map of time to target")]
        if best_per_batch(trials):
            parts += ["<h2>Validation metric vs training time</h2>",
                      _figure(curves(trials, target), "validation metric vs training seconds")]
    if prior is not None:
        parts += ["<h2>Throughput profile</h2>", _table(None, profile_facts(prior), "facts"),
                  _figure(profile_png(prior), "throughput profile"),
                  "<h2>Memory model</h2>", _table(None, probe_facts(prior["probe"]), "facts"),
                  _figure(memory_model(prior["probe"]), "memory model")]
    parts += ["<h2>Trials</h2>",
              '<p class="muted">Intermediate values are reported at step = milliseconds of '
              "training, so trials with different batch sizes are compared at equal time.</p>",
              _table(TRIAL_HEADER, trial_rows(trials),
                     row_classes=[t.state.name.lower() for t in trials])]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>autobatch report: {html.escape(study.study_name)}</title>"
            f"<style>{STYLE}</style></head><body><main>{''.join(parts)}</main></body></html>\n")


def write_report(url: str, out: str | Path, study_name: str | None = None) -> Path:
    """Render the study at `url` to `out` atomically (temp file + os.replace)."""
    out = Path(out)
    if not out.parent.is_dir():
        raise ConfigError(f"--out folder {str(out.parent)!r} does not exist")
    study = load_study(url, study_name)
    write_atomic(out, render_html(study, mask_url(url)), what="report")
    return out
