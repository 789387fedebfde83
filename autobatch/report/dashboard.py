"""What optuna-dashboard shows beside the trials: a study note, artifacts, and the launcher.

publish() runs at the end of tune(): it stores the recommendation (the best.json
document) as the study user attribute keys.RESULT, so `autobatch report` can show it
later, and beside it the recommendation and verdict in words (the dashboard's Study
User Attributes show the JSON documents raw); writes a markdown note (the
re-measured recommendation and its verdict against the reference recipe, the fastest
trials' recipes, probe, profile, and how to read the dashboard's panels); and uploads
profile.png, probe.json and best.json with Optuna's artifact API. Artifacts live in a
FileSystemArtifactStore folder: `<db>-artifacts` beside a SQLite database, or a folder
the caller names (server databases have no "beside").

serve() runs optuna-dashboard in the calling process (`autobatch dashboard`).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact

import autobatch.keys as keys
from autobatch.hyperparams import Hyperparams
from autobatch.report.facts import Facts, cost_line, probe_facts, profile_facts, recipe_cells
from autobatch.report.figures import profile_png
from autobatch.report.recommendation import (
    COMPARISON_HEADER,
    comparison,
    runs_words,
    verdict_line,
)
from autobatch.result import TuneResult
from autobatch.search import reached_trials, summarize
from autobatch.storage import mask_url, open_storage, storage_file

log = logging.getLogger(__name__)

ARTIFACT_SUFFIX = "-artifacts"
SERVE_POLL_S = 0.2  # how often serve() wakes to let a stop signal raise


def artifact_folder(url: str, folder: str | Path | None = None) -> Path | None:
    """`folder` if given, else `<stem>-artifacts` beside a SQLite or journal file, else
    None (a database server has no "beside")."""
    if folder is not None:
        return Path(folder)
    file = storage_file(url)
    return file.with_name(file.stem + ARTIFACT_SUFFIX) if file is not None else None


def is_loopback(host: str) -> bool:
    """True when every address `host` resolves to is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False  # unresolvable: let the server fail, but warn first
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
              for row in rows]
    return "\n".join(lines)


def _facts(facts: Facts) -> str:
    # "B*": a bare * would end the bold early
    return "\n".join("- **" + label.replace("*", r"\*") + f"**: {value}"
                      for label, value in facts)


def _best_trial_line(study: optuna.Study, rec: dict) -> str:
    """What the dashboard's "Best Trial" card is, beside the re-measured time: the
    study's fastest single run, on the study's seed."""
    done = reached_trials(study.get_trials(deepcopy=False))
    if not done or not (rec.get("spread") or {}).get("runs"):
        return ""
    best = min(done, key=lambda t: t.value)
    return (f"The dashboard's *Best Trial* (number={best.number}, {best.value:.4g}) is the "
            f"study's fastest single run, on the study's seed, in seconds of training; "
            f"the time above ({runs_words(rec)}) is the one to expect.")


def _best_trials(study: optuna.Study, count: int = 5) -> str:
    """The fastest trials with the recipe each trained (the dashboard's Params are the
    search coordinates)."""
    done = sorted(reached_trials(study.get_trials(deepcopy=False)), key=lambda t: t.value)
    rows = [[str(t.number), *recipe_cells(Hyperparams.stored(t.user_attrs)),
             f"{t.value:.4g} s"] for t in done[:count]]
    header = ["trial", "batch", "LR", "momentum", "schedule", "study time to target"]
    return _markdown_table(header, rows) if rows else ""


def _reading_guide(prior: dict | None) -> str:
    anchor = prior["space"]["anchor_batch"] if prior else "B0"
    return "\n".join([
        "- **Params** are the search's coordinates, not the recipe: `lr0` is the LR at "
        f"batch {anchor} with momentum 0.9, `lr_scaling` carries it to other batches, "
        f"`one_minus_momentum` is 1 - momentum; LR = lr0 x (batch / {anchor})^lr_scaling "
        "x (1 - momentum) / 0.1. Each trial's **User Attributes** hold the recipe it "
        "trained (`Recipe`, `batch_size`, `lr`, `momentum`, `schedule`) and what it "
        "measured (steps, samples/s, stop or prune reason).",
        "- **Intermediate values** (the axis optuna-dashboard labels \"Objective Value\") "
        "are, at step = **milliseconds of training**, the objective a trial would score "
        "if it stopped there short of the target: trial budget x (1 + target - best "
        "metric so far), in seconds. The chart compares batch sizes at equal time; the "
        "validation metric itself is each trial's `curve` attribute.",
        "- **Pruned trials**: Optuna keeps a pruned trial's last intermediate value as its "
        "value, so in the History plot (\"Include PRUNED trials\") a pruned trial sits "
        "with the trials that ran out of budget, above every trial that reached the "
        "target: it did not reach it.",
        "- **Rungs** (long runs): a trial PRUNED with `prune_reason` \"paused at Ns\" "
        "paused at rung `paused_at_rung` with a checkpoint; when it ranked in the best "
        "third there, a later trial with the same Params and `continues_trial` = its "
        "number resumed it (`rung` + 1): that trial's curve and time to target are the "
        "whole run's, from the start.",
    ])


def study_note(study: optuna.Study, result: TuneResult) -> str:
    """The markdown note: what was chosen and how sure it is, what was measured, and how
    to read the dashboard's own panels."""
    data = result.to_dict()
    prior = study.user_attrs.get(keys.PRIOR)
    headline, rows = comparison(data)
    verdict = verdict_line(data)
    counts = ", ".join(f"{n} {state}" for state, n in sorted(summarize(study).items()))
    parts = [
        f"## autobatch: {result.workload} to {result.target:g} on {result.device}",
        f"**Recommendation**: {headline}.",
        f"**Verdict**: {verdict}." if verdict else "",
        _best_trial_line(study, data),
        _markdown_table(COMPARISON_HEADER, rows) if rows else "",
        "Candidates were re-measured with fresh seeds; times are seconds of training to "
        "the target, evaluation excluded; speed vs reference is the median over paired "
        "seeds of the reference's time / the candidate's, and the seeds it won.",
        "### Fastest trials of the study",
        _best_trials(study),
    ]
    if prior is not None:
        parts += ["### Memory probe", _facts(probe_facts(prior["probe"])),
                  "### Throughput profile", _facts(profile_facts(prior))]
    parts += [
        "### Study",
        f"- **objective**: `time_to_target_s` (minimised; a trial that misses the target "
        f"scores budget x (1 + shortfall))\n- **trials**: {counts}\n"
        f"- **storage**: `{result.study.storage}`\n"
        f"- **cost**: {cost_line(data)}",
        "### Reading the dashboard",
        _reading_guide(prior),
        "Artifacts: `profile.png`, `probe.json`, `best.json`; the full page: "
        "`autobatch report --out report.html`.",
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def publish(study: optuna.Study, result: TuneResult,
            artifact_dir: str | Path | None = None) -> Path | None:
    """Store the recommendation in the study, write the note, upload the artifacts.

    Artifacts go to `artifact_dir`, else beside a SQLite database; with neither, only
    the attribute and the note are written. A rerun replaces the note and rewrites the
    artifacts in place (no duplicates). Returns the artifact folder used, or None.
    """
    from optuna_dashboard import save_note  # imported here: ~1 s that only this needs

    # tune() masks already; a caller's own TuneResult might not
    result = replace(result, study=replace(result.study, storage=mask_url(result.study.storage)))
    data = result.to_dict()
    study.set_user_attr(keys.RESULT, data)
    study.set_user_attr(keys.RECOMMENDATION_TEXT, comparison(data)[0])
    study.set_user_attr(keys.VERDICT_TEXT, verdict_line(data) or "not judged")
    save_note(study, study_note(study, result))
    folder = artifact_folder(result.study.storage, artifact_dir)
    if folder is None:
        return None
    prior = study.user_attrs.get(keys.PRIOR)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        store = FileSystemArtifactStore(folder)
        existing = {m.filename: m.artifact_id for m in get_all_artifact_meta(study)}
        with tempfile.TemporaryDirectory() as tmp:
            files = {"best.json": result.render("json").encode()}
            if prior is not None:
                files["probe.json"] = json.dumps(prior["probe"], indent=2).encode()
                files["profile.png"] = profile_png(prior)
            for name, content in files.items():
                path = Path(tmp) / name
                path.write_bytes(content)
                if name in existing:
                    with path.open("rb") as handle:
                        store.write(existing[name], handle)
                else:
                    upload_artifact(artifact_store=store, file_path=str(path),
                                    study_or_trial=study)
    except OSError as exc:  # the study and note are safe; artifacts are a convenience
        log.warning("artifacts not written to %s: %s", folder, exc.strerror or exc)
        return None
    return folder


def serve(url: str, *, host: str, port: int, artifacts: Path | None) -> None:
    """Run optuna-dashboard on `url` until interrupted (blocks). Artifacts: the folder
    given, else the one beside the storage file when it exists.

    The server runs in a daemon thread and this one waits: a stop signal raised while
    the server handled a request would be swallowed by it (and Ctrl-C by bottle), so it
    is raised here instead, and the process ends with the server in it."""
    from optuna_dashboard import run_server

    folder = artifact_folder(url, artifacts)
    store = FileSystemArtifactStore(folder) if folder is not None and folder.is_dir() else None
    storage = open_storage(url)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            run_server(storage, host=host, port=port, artifact_store=store)
        except BaseException as exc:  # a port in use: raised in the caller below
            failed.append(exc)

    server = threading.Thread(target=run, name="optuna-dashboard", daemon=True)
    server.start()
    while server.is_alive():
        server.join(SERVE_POLL_S)
    if failed:
        raise failed[0]
