"""Hugging Face Trainer setups as workloads: dict batches, trials run by Trainer."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from autobatch import Budget, RunConfig, WorkloadError, load_workload, probe, profile, run

pytest.importorskip("transformers")

from transformers import TrainingArguments  # noqa: E402

from autobatch.integrations.transformers import training_arguments  # noqa: E402
from autobatch.measure.noise import measure_noise  # noqa: E402
from autobatch.train import setup_run  # noqa: E402

STUDIES = Path(__file__).resolve().parents[2] / "studies"
SPEC = "hf_bert:workload"


def workload():
    return load_workload(SPEC, app_dir=str(STUDIES))


def test_the_workload_takes_its_reference_from_the_training_arguments_and_dict_samples():
    wl = workload()
    assert (wl.reference.batch_size, wl.reference.lr, wl.reference.momentum) == (32, 1e-3, 0.9)
    assert wl.eval_batch_size == 256 and wl.name == "hf-bert-tokens"
    inputs, label = wl.train_data[0]
    assert sorted(inputs) == ["attention_mask", "input_ids"] and label.dim() == 0
    logits = wl.model_factory()({k: v[None] for k, v in inputs.items()}).logits
    assert logits.shape == (1, 2)


@pytest.mark.slow
def test_run_trains_with_the_trainer_and_stops_when_told():
    wl = workload()
    assert wl.trainer.compute_metrics is sys.modules["hf_bert"].compute_metrics
    calls = []
    result = run(wl, RunConfig.of(wl.reference, target=0.99, budget=Budget(seconds=60), seed=0),
                 device="cpu", on_eval=lambda point: calls.append(point) or len(calls) == 2)
    assert result.stop_reason == "stopped" and len(result.trace) == 2 == len(calls)
    first, second = result.trace
    assert 0 < first.steps < second.steps == result.steps
    assert result.samples == 32 * result.steps and 0 <= second.metric <= 1
    assert second.train_seconds == result.train_seconds and result.eval_seconds > 0


def test_a_metric_the_trainer_never_reports_names_the_keys_it_did():
    wl = workload()
    wl = replace(wl, trainer=replace(wl.trainer, metric="eval_f1"))
    with pytest.raises(WorkloadError, match=r"never logged metric 'eval_f1' during validation "
                                            r"\(it logged: .*eval_accuracy.*eval_loss"):
        run(wl, RunConfig.of(wl.reference, target=0.9, budget=Budget(seconds=30)),
            device="cpu")


@pytest.mark.slow
def test_dict_batches_go_through_the_probe_the_profile_and_the_noise_scale():
    wl = workload()
    cpu = torch.device("cpu")
    assert probe(wl, device=cpu, max_batch=64, use_cache=False).max_batch == 64
    result = profile(wl, device=cpu, batch_sizes=[8, 32], noise=False)
    assert [row.batch_size for row in result.rows] == [8, 32]
    assert all(row.samples_per_s > 0 for row in result.rows)
    setup = setup_run(wl, wl.reference, cpu, seed=0)
    noise = measure_noise(setup.model, setup.optimizer, wl, cpu, b_small=8, b_big=32, draws=4)
    assert (noise.draws, noise.b_small, noise.b_big) == (4, 8, 32) and math.isfinite(noise.g2)


def test_training_arguments_carry_the_recipe(tmp_path):
    best = tmp_path / "best.json"
    best.write_text(json.dumps({
        "workload": "hf-bert-tokens", "batch_size": 64, "lr": 3e-4, "momentum": 0.85,
        "schedule": {"name": "cosine", "warmup": "10steps", "horizon": "200steps",
                     "warmup_steps": 10, "horizon_steps": 200}}))
    base = TrainingArguments(output_dir=str(tmp_path), gradient_accumulation_steps=2,
                             report_to="none", use_cpu=True)
    args = training_arguments(best, base)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (32, 2)
    assert (args.learning_rate, args.adam_beta1) == (3e-4, 0.85)
    assert (args.warmup_steps, args.max_steps) == (10, 200)
    assert args.lr_scheduler_type.value == "cosine" and args.output_dir == str(tmp_path)
    constant = training_arguments({"batch_size": 7, "lr": 0.1}, base)
    assert (constant.per_device_train_batch_size, constant.gradient_accumulation_steps) == (7, 1)
    assert constant.lr_scheduler_type.value == "constant_with_warmup"
