"""The framework examples in studies/ through the real command, and their results
applied back to the frameworks' settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUDIES = ROOT / "studies"


def tune(study: str, tmp_path: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "autobatch_cli", "tune", "--config", str(STUDIES / study),
         "--app-dir", str(STUDIES), "--device", "cpu",
         # the trial count bounds the work; the time budgets hold on a busy machine
         "--timeout", "480s", "--trial-budget", "30s", "--n-trials", "4",
         "--storage", f"sqlite:///{tmp_path}/s.db", "--output", str(tmp_path / "best.json")],
        capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp_path / "best.json").read_text())


@pytest.mark.slow
def test_the_lightning_study_tunes_and_applies_back(tmp_path, monkeypatch):
    pytest.importorskip("lightning")
    best = tune("lightning-blobs.toml", tmp_path)
    assert best["workload"] == "lightning:lightning_blobs:LitBlobs" and best["target"] == 0.9
    monkeypatch.syspath_prepend(str(STUDIES))
    from lightning_blobs import BlobData, LitBlobs

    from autobatch.integrations.lightning import apply

    module, data = LitBlobs(), BlobData()
    apply(tmp_path / "best.json", module=module, datamodule=data)
    assert data.batch_size == best["batch_size"]
    assert (module.hparams.lr, module.hparams.momentum) == (best["lr"], best["momentum"])


@pytest.mark.slow
def test_the_hugging_face_study_tunes_and_applies_back(tmp_path):
    pytest.importorskip("transformers")
    best = tune("hf-bert-tokens.toml", tmp_path)
    assert best["workload"] == "hf-bert-tokens" and best["target"] == 0.9
    from transformers import TrainingArguments

    from autobatch.integrations.transformers import training_arguments

    args = training_arguments(tmp_path / "best.json",
                              TrainingArguments(output_dir=str(tmp_path), report_to="none"))
    assert (args.per_device_train_batch_size, args.learning_rate, args.adam_beta1) == (
        best["batch_size"], best["lr"], best["momentum"])
