"""A tuned study as one self-contained HTML page.

The page needs no server and no network: pictures are inline PNG data URIs. It shows
time to target against batch size (best per batch), an LR x batch map of time to
target, validation metric against training seconds of the best trial per batch, the
throughput profile and the memory model from the prior, the recommendation beside the
reference recipe, and every trial with its state and prune reason.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

import optuna
from optuna.trial import TrialState

import autobatch.keys as keys
from autobatch.errors import ConfigError
from autobatch.files import write_atomic
from autobatch.report.facts import (
    TRIAL_HEADER,
    best_per_batch,
    cost_line,
    load_study,
    probe_facts,
    profile_facts,
    trial_rows,
)
from autobatch.report.figures import (
    curves,
    lr_batch_map,
    lr_schedule,
    memory_model,
    profile_png,
    resolved_schedule,
    time_vs_batch,
)
from autobatch.report.recommendation import (
    COMPARISON_HEADER,
    comparison,
    recommendation,
    verdict_line,
)
from autobatch.storage import mask_url


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


STYLE = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;margin:0;
background:#f6f7f9}main{max-width:1100px;margin:0 auto;padding:24px 28px 60px}
h1{margin:0 0 4px;font-size:26px}h2{margin:34px 0 10px;font-size:20px;
border-bottom:1px solid #ddd;padding-bottom:4px}.sub{color:#666;margin:0 0 18px}
.card{background:#fff;border:1px solid #dde;border-radius:8px;padding:14px 18px;margin:12px 0}
.rec{border-left:6px solid #ff7f0e;font-size:17px}.rec b{font-size:20px}
.verdict{margin:8px 0 0;font-size:15px;color:#333}
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
        verdict = verdict_line(rec)
        parts.append(f'<div class="card rec"><b>{html.escape(headline.split(":")[0])}</b>:'
                     f"{html.escape(headline.split(':', 1)[1])}"
                     + (f'<p class="verdict">Verdict: {html.escape(verdict)}</p>' if verdict
                        else "")
                     + (f'<p class="muted">{html.escape(cost.capitalize())}.</p>'
                        if (cost := cost_line(rec)) else "") + "</div>")
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
        if rec is not None and (schedule := resolved_schedule(rec)) is not None:
            parts += ["<h2>Recommended LR schedule</h2>",
                      f'<p class="muted">{html.escape(schedule.words())}</p>',
                      _figure(lr_schedule(rec, schedule), "learning rate vs optimizer step")]
    if prior is not None:
        parts += ["<h2>Throughput profile</h2>", _table(None, profile_facts(prior), "facts"),
                  _figure(profile_png(prior), "throughput profile"),
                  "<h2>Memory model</h2>", _table(None, probe_facts(prior["probe"]), "facts"),
                  _figure(memory_model(prior["probe"]), "memory model")]
    parts += ["<h2>Trials</h2>",
              '<p class="muted">Intermediate values are reported at step = milliseconds of '
              "training, so trials with different batch sizes are compared at equal time; "
              "each is the objective the trial would score if it stopped there short of the "
              "target (trial budget x (1 + shortfall)), so a pruned trial's value sits above "
              "every success.</p>",
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
