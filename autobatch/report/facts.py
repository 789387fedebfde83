"""What the page and the dashboard note both read from a study: the study itself, the best
trial per batch, and the facts and trial rows as text (the recommendation's text is
recommendation.py).

Everything comes from the study: trials and their user attributes (autobatch.keys),
the prior (keys.PRIOR) and the verified recommendation that dashboard.publish stores as
keys.RESULT (the best.json document). Without it the study's best trial stands in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

import autobatch.keys as keys
from autobatch.errors import ConfigError
from autobatch.hyperparams import Hyperparams
from autobatch.search import reached_trials
from autobatch.search.precision_choice import figures_words
from autobatch.storage import mask_url, open_storage, storage_file

GIB = 1024**3
Facts = list[tuple[str, str]]


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
        recipe = Hyperparams.stored(trial.user_attrs)
        if recipe is None or not trial.user_attrs.get(keys.CURVE):
            continue
        batch = recipe.batch_size
        if batch not in best or _rank(trial) < _rank(best[batch]):
            best[batch] = trial
    return dict(sorted(best.items()))


def _rank(trial: FrozenTrial) -> tuple[int, float]:
    if trial in reached_trials([trial]):
        return (0, trial.value)
    return (1, -(trial.user_attrs.get(keys.BEST_METRIC) or 0.0))


def fmt_seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g} s"


def cost_line(rec: dict[str, Any]) -> str:
    """What the tune cost, in runs of the reference recipe where it was re-measured;
    empty for a recommendation read from the study alone (no tune result)."""
    if rec.get("tuning_seconds") is None:
        return ""
    line = f"tuning took {rec['tuning_seconds']:.0f} s"
    if rec.get("break_even"):
        line += f" = {rec['break_even']:.2g} reference runs to the target (break-even)"
    if rec.get("first_model_s") is not None:
        line += f"; a model reached the target after {rec['first_model_s']:.0f} s"
        if rec.get("first_model_break_even"):
            line += f" ({rec['first_model_break_even']:.2g} reference runs)"
    if rec.get("kept_model"):
        line += f", kept in {rec['kept_model']}"
    return line


def fmt_gib(value: float | None) -> str:
    return "-" if value is None else f"{value / GIB:.3g} GiB"


def probe_facts(probe: dict[str, Any]) -> Facts:
    """The memory probe in a few lines: what fits, why it stops, the memory model."""
    facts = [
        ("largest batch that fits", f"{probe['max_batch_size']} (limited by "
                                    f"{probe['limited_by'].replace('_', ' ')})"),
        ("device", f"{probe['device']['name']} ({probe['device']['type']}), "
                   f"{probe['isolation']}"),
        ("peak memory at that batch", f"{fmt_gib(probe['peak_bytes'])} of a "
                                      f"{fmt_gib(probe['budget_bytes'])} budget "
                                      f"({probe['headroom']:.0%} headroom)"),
    ]
    if probe.get("bytes_per_sample") is not None and probe.get("fixed_bytes") is not None:
        r2 = f", R² {probe['fit_r2']:.3f}" if probe.get("fit_r2") is not None else ""
        facts.append(("memory model", f"{fmt_gib(probe['fixed_bytes'])} + "
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
    numerics = numerics_words(space, prior.get("precision_figures"))
    return facts + ([("numerics", numerics)] if numerics else [])


def numerics_words(space: dict[str, Any], figures: dict[str, float | None] | None) -> str:
    """How the trials compute their global batch, where not plain fp32: accumulation,
    precision (with --precision auto's seconds per sample), memory format."""
    parts = []
    if space.get("micro_max"):
        parts.append(f"micro-batches of at most {space['micro_max']} (accumulation per batch)")
    elif space.get("grad_accum", 1) > 1:
        parts.append(f"{space['grad_accum']} micro-batches per step")
    precision = space.get("precision", "fp32")
    if figures:
        parts.append(f"{precision} (least time per sample: {figures_words(figures)}; "
                     "accuracy effects not modelled)")
    elif precision != "fp32":
        parts.append(precision)
    parts += ["channels-last"] if space.get("channels_last") else []
    return "; ".join(parts)


def recipe_cells(recipe: Hyperparams | None) -> list[str]:
    """Batch, LR, momentum and schedule as table cells ('-' for a trial that stored no
    recipe)."""
    if recipe is None:
        return ["-"] * 4
    return [str(recipe.batch_size), f"{recipe.lr:.4g}", f"{recipe.momentum:.3g}",
            str(recipe.schedule)]


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
        rows.append([str(t.number), t.state.name.lower(),
                     *recipe_cells(Hyperparams.stored(a)), outcome,
                     _fmt(a.get(keys.BEST_METRIC), ".4f"), _fmt(a.get(keys.STEPS), "d"),
                     _fmt(a.get(keys.SAMPLES_PER_S), ",.0f"),
                     _fmt(a.get(keys.TRAIN_SECONDS), ".3g"), a.get(keys.STOP_REASON, "-"),
                     keys.reason(a) or ""])
    return rows


TRIAL_HEADER = ["#", "state", "batch", "LR", "momentum", "schedule", "time to target",
                "best metric", "steps", "samples/s", "train s", "stop", "prune / fail reason"]
