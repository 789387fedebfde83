"""The throughput profiler: exact timings with a fake clock, real torch on the CPU."""

import dataclasses
import json
import math

import pytest
import torch
from torch import nn

from autobatch import ConfigError, ProfileResult, profile
from autobatch.measure.timing import MAX_WARMUP_STEPS, REPEATS
from tests.conftest import tiny_workload
from tests.doubles import ALPHA, BETA, FakeClock, step_times, timed_linear_factory


def test_profile_with_a_fake_clock_measures_the_fake_device_exactly():
    clock = FakeClock()
    workload = tiny_workload(n_train=512, model_factory=timed_linear_factory(clock))
    sizes = [8, 16, 32, 64, 128, 256, 512]
    result = profile(workload, device="cpu", batch_sizes=sizes, noise=False, clock=clock)
    assert [r.batch_size for r in result.rows] == sizes
    for row, expected in zip(result.rows, step_times(sizes)):
        assert row.fits and row.repeats == REPEATS
        assert row.iter_s == pytest.approx(expected, rel=1e-9)
        assert row.iter_s_min == pytest.approx(row.iter_s_max, rel=1e-9)
        assert row.samples_per_s == pytest.approx(row.batch_size / expected, rel=1e-9)
        assert row.steps_per_epoch == 512 // row.batch_size
        assert row.epoch_s == pytest.approx(row.steps_per_epoch * expected, rel=1e-9)
        assert row.data_wait == 0.0 and not row.input_bound
        assert row.warmup_steps < MAX_WARMUP_STEPS  # constant times: stable at once
    assert result.alpha == pytest.approx(ALPHA, rel=1e-9)
    assert result.beta == pytest.approx(BETA, rel=1e-9)
    assert result.b_sat == pytest.approx(200.0, rel=1e-9)
    assert result.knee == 256  # B <= 900, and 512 cannot be doubled inside the range
    assert result.eval_pass_s == pytest.approx(ALPHA + BETA * 64, rel=1e-9)  # 64 val samples
    assert result.seconds == pytest.approx(clock.now)
    assert result.predict_iter_s(1000) == pytest.approx(ALPHA + BETA * 1000)


def test_profile_reports_sizes_above_the_maximum_as_not_fitting():
    result = profile(tiny_workload(n_train=256), device="cpu", batch_sizes=[8, 16, 64, 512],
                     max_batch=32, noise=False)
    rows = {r.batch_size: r for r in result.rows}
    assert rows[8].fits and rows[16].fits
    assert not rows[64].fits and rows[64].reason == "above max_batch 32"
    assert rows[64].iter_s is None
    unbounded = profile(tiny_workload(n_train=256), device="cpu", batch_sizes=[16, 512],
                        noise=False)
    assert unbounded.rows[1].reason == "larger than the training set"
    assert unbounded.alpha is None and unbounded.knee is None  # one size: nothing to fit


def test_profile_marks_a_size_that_runs_out_of_memory_and_goes_on():
    clock = FakeClock()
    workload = tiny_workload(model_factory=timed_linear_factory(clock, oom_from=64))
    result = profile(workload, device="cpu", batch_sizes=[16, 32, 64, 128], noise=False,
                     clock=clock)
    assert [(r.batch_size, r.fits, r.reason) for r in result.rows] == [
        (16, True, None), (32, True, None), (64, False, "out of memory"),
        (128, False, "out of memory")]
    assert result.beta == pytest.approx(BETA, rel=1e-9)


def test_the_noise_scale_stays_below_a_size_that_ran_out_of_memory():
    clock = FakeClock()
    workload = tiny_workload(model_factory=timed_linear_factory(clock, oom_from=64))
    result = profile(workload, device="cpu", batch_sizes=[16, 32, 64], clock=clock)
    assert result.noise is not None and result.noise.b_big == 32  # 64 would run out


def test_a_noise_scale_batch_that_runs_out_of_memory_leaves_the_profile_without_it(caplog):
    clock = FakeClock()
    workload = tiny_workload(model_factory=timed_linear_factory(clock, oom_from=64))
    result = profile(workload, device="cpu", batch_sizes=[8, 16], clock=clock)  # b_big 64
    assert result.noise is None
    assert [r.fits for r in result.rows] == [True, True]
    assert "noise scale not measured: out of memory at batch 64" in caplog.text


def test_profile_leaves_the_users_model_optimizer_and_rng_untouched():
    torch.manual_seed(1)
    model = nn.Linear(8, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 8)).sum().backward()
    optimizer.step()
    # A factory that hands out the user's own instance, as `lambda: model` does.
    workload = tiny_workload(model_factory=lambda: model)
    params = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    momentum = [s["momentum_buffer"].clone() for s in optimizer.state.values()]
    rng = torch.get_rng_state()

    result = profile(workload, device="cpu", batch_sizes=[8, 32])

    assert result.noise is not None
    for key, value in model.state_dict().items():
        assert torch.equal(value, params[key])
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    assert all(torch.equal(s["momentum_buffer"], m)
               for s, m in zip(optimizer.state.values(), momentum))
    assert model.training
    assert torch.equal(torch.get_rng_state(), rng)


def test_profile_result_is_strict_json_and_survives_a_save_load_round_trip(tmp_path):
    clock = FakeClock()
    workload = tiny_workload(model_factory=timed_linear_factory(clock))
    result = profile(workload, device="cpu", batch_sizes=[8, 16, 1000], max_batch=64,
                     clock=clock)
    path = tmp_path / "profile.json"
    result.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["profile.json"]  # no temp file left
    payload = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(c))
    assert payload == result.to_dict()
    assert payload["rows"][2]["fits"] is False and payload["rows"][2]["iter_s"] is None
    assert ProfileResult.load(path) == result
    flat_clock = FakeClock()
    flat = profile(tiny_workload(model_factory=timed_linear_factory(flat_clock, beta=0.0)),
                   device="cpu", batch_sizes=[8, 16], noise=False, clock=flat_clock)
    assert flat.beta == 0.0 and flat.b_sat is None  # no saturation batch, not inf
    # Non-finite floats are written as null, never as Infinity/NaN.
    odd = dataclasses.replace(flat, b_sat=math.inf, fit_error=math.nan)
    assert (odd.to_dict()["b_sat"], odd.to_dict()["fit_error"]) == (None, None)
    json.dumps(odd.to_dict(), allow_nan=False)


def test_profile_save_to_an_unwritable_path_is_a_config_error(tmp_path):
    result = profile(tiny_workload(), device="cpu", batch_sizes=[8, 16], noise=False)
    with pytest.raises(ConfigError, match="cannot write profile"):
        result.save(tmp_path / "missing" / "profile.json")


@pytest.mark.parametrize("kwargs, match", [
    ({"knee_gain": 0.0}, "knee_gain"), ({"max_batch": 0}, "max_batch"),
    ({"batch_sizes": []}, "batch_sizes"), ({"batch_sizes": [0, 8]}, "batch_sizes"),
])
def test_profile_rejects_bad_arguments_naming_them(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        profile(tiny_workload(), device="cpu", **kwargs)
