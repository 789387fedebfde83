"""The recommendation as text, for the page and the dashboard note: how its time was
measured (fresh-seed runs, the median's interval, the study trial's own time), its
verdict, and the table of the re-measured candidates against the reference recipe.

It reads the best.json document (keys.RESULT); without one the study's best trial
stands in, not re-measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna.trial import FrozenTrial

from autobatch.candidate import REFERENCE, Candidate
from autobatch.hyperparams import Hyperparams
from autobatch.report.facts import fmt_seconds, recipe_cells
from autobatch.search import reached_trials
from autobatch.verdict import Paired, paired


def recommendation(data: dict[str, Any] | None, trials: Sequence[FrozenTrial]
                   ) -> dict[str, Any] | None:
    """The verified recommendation (best.json), else the study's best trial, else None."""
    if data is not None:
        return data
    done = reached_trials(trials)
    if not done:
        return None
    best = min(done, key=lambda t: t.value)
    return {**Hyperparams.from_dict(best.user_attrs).to_dict(),
            "expected_time_to_target_s": best.value, "spread": {"runs": 0}, "candidates": [],
            "trial_number": best.number}


def _is_recommended(cand: dict[str, Any], rec: dict[str, Any]) -> bool:
    return cand["tuned"] and Hyperparams.from_dict(cand) == Hyperparams.from_dict(rec)


def recommended_candidate(rec: dict[str, Any]) -> dict[str, Any] | None:
    """The re-measured candidate the recommendation is (None: not re-measured)."""
    return next((c for c in rec["candidates"] if _is_recommended(c, rec)), None)


def recommended_trial(rec: dict[str, Any]) -> int | None:
    """The study trial the recommendation came from."""
    if "trial_number" in rec:
        return rec["trial_number"]
    cand = recommended_candidate(rec)
    return cand["trial_number"] if cand is not None else None


def _interval(cand: dict[str, Any]) -> str:
    """The median's distribution-free interval, '[2.9, 4.1] s' ('[2.9 s, not reached]'
    when a run above it missed); '' without one (a single run, an older result file)."""
    interval = cand.get("interval") or {}
    if len(cand["runs"]) < 2 or interval.get("low") is None:
        return ""
    if interval["high"] is None:
        return f"[{interval['low']:.3g} s, not reached]"
    return f"[{interval['low']:.3g}, {interval['high']:.3g}] s"


def runs_words(rec: dict[str, Any]) -> str:
    """What the recommendation's time is: 'median of 3 fresh-seed runs', 'one
    fresh-seed run', or 'one study trial, not re-measured'."""
    runs = (rec.get("spread") or {}).get("runs") or 0
    if not runs:
        return "one study trial, not re-measured"
    return "one fresh-seed run" if runs == 1 else f"median of {runs} fresh-seed runs"


def measured(rec: dict[str, Any]) -> str:
    """How the recommendation's time was measured: the number of fresh-seed runs and
    the median's interval, and the study trial's own single-seed time beside it."""
    how = runs_words(rec)
    cand = recommended_candidate(rec)
    if cand is None or not cand["runs"]:
        return how
    interval = _interval(cand)
    parts = [how, f"{cand['interval']['coverage']:.0%} interval {interval}" if interval else ""]
    if cand.get("study_value") is not None and cand.get("trial_number") is not None:
        parts.append(f"trial {cand['trial_number']}'s study run: "
                     f"{fmt_seconds(cand['study_value'])}")
    return ", ".join(p for p in parts if p)


def verdict_line(rec: dict[str, Any]) -> str | None:
    """The verdict in words ('use this recipe' or 'keep the reference recipe') and
    why; None for a recommendation without one (the study's best trial alone)."""
    verdict = rec.get("verdict")
    if verdict is None:
        return None
    says = "use this recipe" if verdict == "recommendation" else "keep the reference recipe"
    return f"{says}: {rec['verdict_reason']}"


def _paired(cand: dict[str, Any], ref: dict[str, Any]) -> Paired:
    """cand against ref on the fresh seeds both ran (verdict.paired, from best.json)."""
    def of(data: dict[str, Any]) -> Candidate:
        return Candidate(name=data["name"], hparams=Hyperparams.from_dict(data),
                         tuned=data["tuned"], runs=tuple(data["runs"]))
    return paired(of(cand), of(ref))


def _speed(cand: dict[str, Any], ref: dict[str, Any] | None) -> str:
    """The table's speed against the reference recipe: the median over paired seeds of
    reference time / this time, and the seeds won; 'won W/N' alone where no pair had
    both reach the target."""
    if ref is None or not cand["runs"] or not ref["runs"]:
        return "-"
    if cand is ref:
        return "reference"
    pair = _paired(cand, ref)
    n = pair.wins + pair.losses + pair.ties
    won = f"won {pair.wins}/{n}"
    return won if pair.median_ratio is None else f"{pair.median_ratio:.2g}x, {won}"


def _median_cell(cand: dict[str, Any]) -> str:
    if not cand["runs"]:
        return "-"
    if cand["median_s"] is None:
        return "not reached (most runs)"
    interval = _interval(cand)
    return fmt_seconds(cand["median_s"]) + (f" {interval}" if interval else "")


def comparison(rec: dict[str, Any]) -> tuple[str, list[list[str]]]:
    """A headline sentence and one row per candidate: name, recipe, median time to
    target with its interval, runs reached, speed against the reference recipe."""
    recipe = Hyperparams.from_dict(rec)
    headline = (f"{recipe.summary()}: {fmt_seconds(rec['expected_time_to_target_s'])} "
                f"to the target ({measured(rec)})")
    ref = next((c for c in rec["candidates"] if c["name"] == REFERENCE), None)
    best = recommended_candidate(rec)
    if ref is None:
        headline += "; no reference recipe was measured"
    elif not ref["runs"]:
        headline += "; the reference recipe was not re-measured"
    else:
        ref_recipe = Hyperparams.from_dict(ref)
        named = f"batch {ref_recipe.batch_size}, LR {ref_recipe.lr:.3g}"
        pair = _paired(best, ref) if best is not None else None
        if pair is not None and pair.median_ratio is not None:
            headline += (f"; {pair.median_ratio:.2g}x as fast as the reference recipe on "
                         f"paired seeds ({named}: {fmt_seconds(ref['median_s'])})")
        else:
            headline += (f"; the reference recipe ({named}) reached the target in "
                         f"{ref['reached']} of {len(ref['runs'])} runs")
    rows = []
    for cand in rec["candidates"]:
        reached = (f"{cand['reached']}/{len(cand['runs'])}" if cand["runs"]
                   else "not re-measured")
        rows.append([cand["name"] + (" (recommended)" if cand is best else ""),
                     *recipe_cells(Hyperparams.from_dict(cand)), _median_cell(cand),
                     reached, _speed(cand, ref)])
    return headline, rows


COMPARISON_HEADER = ["configuration", "batch", "LR", "momentum", "schedule",
                     "median time to target", "reached", "speed vs reference"]
