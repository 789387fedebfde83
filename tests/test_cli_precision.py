"""--grad-accum, --precision and --channels-last on the command line."""

import json

import pytest

from tests.conftest import FIXTURES, invoke

RUN = ["run", "--app-dir", str(FIXTURES), "--workload", "user_workloads:good",
       "--batch-size", "16", "--lr", "0.1", "--device", "cpu"]

RUN_BAD_INPUT = [
    (["--precision", "fp16"], "precision 'fp16' needs a CUDA device (its gradient scaler), "
                              "got device 'cpu'"),
    (["--precision", "fp8"], "--precision must be one of fp32, bf16, fp16, got 'fp8'"),
    (["--precision", "auto"], "--precision must be one of fp32, bf16, fp16, got 'auto'"),
    (["--grad-accum", "0"], "grad_accum must be 'auto' or a whole number >= 1, got '0'"),
    (["--grad-accum", "two"], "grad_accum must be 'auto' or a whole number >= 1, got 'two'"),
    (["--grad-accum", "auto"], "--grad-accum auto chooses per trial in `autobatch tune`"),
    (["--grad-accum", "3"], "batch size 16 is not divisible by world size 1 x accumulation "
                            "steps 3 = 3"),
    (["--channels-last"], "channels_last needs 4-D inputs (batch, channels, height, width); "
                          "workload 'user-good' has inputs of shape (1, 4)"),
]


@pytest.mark.parametrize(("args", "message"), RUN_BAD_INPUT)
def test_run_bad_precision_input_exits_2_with_a_message_naming_it(args, message):
    result = invoke(*RUN, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr.replace("\n", " ")
    assert result.stdout == ""


def test_run_with_accumulation_and_bf16_reports_them_and_replays_from_a_result_file(tmp_path):
    args = [*RUN, "--budget", "20steps", "--json"]
    result = invoke(*args, "--grad-accum", "2", "--precision", "bf16")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    config = payload["config"]
    assert (config["grad_accum"], config["precision"], config["world_size"]) == (2, "bf16", 1)
    assert payload["steps"] == 20 and payload["skipped_steps"] == 0
    assert "1 rank(s) x 2 micro-batch(es) of 8, bf16" in result.stderr
    best = tmp_path / "best.json"
    best.write_text(json.dumps({"workload": "user-good", **{
        k: config[k] for k in ("batch_size", "lr", "momentum", "optimizer", "schedule",
                               "grad_accum", "world_size", "precision", "channels_last")}}))
    again = invoke(*RUN[:5], "--device", "cpu", "--budget", "20steps", "--json",
                   "--recipe", str(best))
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["config"] == config


@pytest.mark.parametrize("command", ["probe", "profile"])
def test_probe_and_profile_refuse_fp16_on_the_cpu(command):
    result = invoke(command, "--workload", "mnist1d-cnn", "--device", "cpu",
                    "--precision", "fp16")
    assert result.exit_code == 2, result.output
    assert "precision 'fp16' needs a CUDA device" in result.stderr
