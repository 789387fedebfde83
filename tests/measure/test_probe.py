
"""The memory probe on real torch on the CPU: late OOMs, errors, a real memory limit, cache."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset
from typer.testing import CliRunner

from autobatch import ConfigError, DeviceError, DoesNotFitError, Workload, probe
from autobatch.device import rss_bytes
from autobatch.measure.footprint import largest_input
from autobatch.measure.forked import run_in_child
from autobatch.measure.probe import _Job
from autobatch.measure.probe_result import ProbeResult
from autobatch.memory_size import parse_bytes
from autobatch_cli.main import app
from tests.conftest import blobs

PROBE_TESTS = __name__  # this module, as a module:function workload spec
OOM = "CUDA out of memory. Tried to allocate 2.00 GiB"
_seen = {"batch": 0}  # last training batch, shared by model and optimizer within a process


class Net(nn.Module):
    """Linear(8, 3) that raises a CUDA-style OOM in one phase from batch `oom_from` on."""

    def __init__(self, oom_from: int = 10**9, phase: str = "forward",
                 error: Exception | None = None) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 3)
        self.oom_from, self.phase, self.error = oom_from, phase, error

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            _seen["batch"] = len(x)
            if self.phase == "forward" and len(x) >= self.oom_from:
                raise self.error or torch.OutOfMemoryError(OOM)
        elif self.phase == "eval" and _seen["batch"] >= self.oom_from:
            raise torch.OutOfMemoryError(OOM)  # training state + eval batch do not fit
        return self.fc(x)


class StepOom(torch.optim.SGD):
    """SGD whose step runs out of memory from batch `oom_from` (optimizer state)."""

    oom_from = 10**9

    def step(self, closure=None):
        if _seen["batch"] >= self.oom_from:
            raise torch.OutOfMemoryError(OOM)
        return super().step(closure)


def workload(n_train: int = 64, **overrides) -> Workload:
    fields = dict(name="probe-tiny", model_factory=Net, train_data=blobs(n_train),
                  val_data=blobs(16), eval_batch_size=8)
    fields.update(overrides)
    return Workload(**fields)


def step_oom_factory(oom_from: int):
    def factory(params, lr, momentum):
        opt = StepOom(params, lr=lr, momentum=momentum)
        opt.oom_from = oom_from
        return opt
    return factory


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("case", ["forward", "optimizer_step", "evaluation"])
def test_probe_never_reports_a_batch_that_runs_out_of_memory_late(case):
    wl = {"forward": workload(model_factory=lambda: Net(23)),
          "optimizer_step": workload(optimizer_factory=step_oom_factory(23)),
          "evaluation": workload(model_factory=lambda: Net(23, phase="eval"))}[case]
    result = probe(wl, device="cpu")
    assert result.max_batch_size == 22
    assert {a.outcome for a in result.attempts if a.batch_size >= 23} == {"oom"}
    assert all(a.outcome == "fit" for a in result.attempts if a.batch_size <= 22)
    assert len(result.attempts) <= 10
    # Every started step counts, including the one that failed, plus the 2-step warm-up
    # and its 2-step check in a capped child.
    assert result.train_steps == 4 + sum(a.train_steps for a in result.attempts)


class Sequences(Dataset):
    """1-D sequences of length 8, except one of length 40: the worst case."""

    def __init__(self, n: int, long_at: int | None) -> None:
        self.n, self.long_at = n, long_at

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        length = 40 if i == self.long_at else 8
        return torch.ones(1, length), i % 3


class SeqNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] * x.shape[-1] > 400:  # memory grows with batch x length
            raise torch.OutOfMemoryError(OOM)
        return self.conv(x).mean(-1)


def test_probe_uses_the_largest_input():
    wl = Workload(name="seq", model_factory=SeqNet, train_data=Sequences(64, long_at=37),
                  val_data=Sequences(8, long_at=None), eval_batch_size=4)
    assert largest_input(wl)[0].shape == (1, 40)
    # Every failure is an OOM without a peak, so the search bisects: more than 6 attempts.
    result = probe(wl, device="cpu", max_attempts=10)
    assert result.max_batch_size == 10  # 10 x 40 = 400; the short inputs would allow 50


class UserBug(Exception):
    pass


@pytest.mark.parametrize("error", [RuntimeError("mat1 and mat2 shapes cannot be multiplied"),
                                   UserBug("bad label")])
def test_probe_propagates_non_oom_errors_unchanged(error):
    wl = workload(model_factory=lambda: Net(8, error=error))
    with pytest.raises(type(error), match=re.escape(str(error))) as info:
        probe(wl, device="cpu")
    assert type(info.value) is type(error)
    assert "in forward" in str(info.value.__cause__)  # the child's traceback


def test_probe_nothing_fits_raises_with_peak_and_usable():
    wl = workload(model_factory=lambda: Net(1))
    with pytest.raises(DoesNotFitError, match=r"does not fit at batch 1: peak out of memory, "
                                              r"usable [\d.]+ GiB") as info:
        probe(wl, device="cpu")
    assert info.value.exit_code == 4


def test_probe_memory_limit_below_the_real_peak_does_not_fit():
    wl = workload()
    limit = rss_bytes() + 2 * 2**20  # above the fixed estimate, below a real step
    with pytest.raises(DoesNotFitError, match=r"does not fit at batch 1: peak "
                                              r"(out of memory|[\d.]+ GiB), usable [\d.]+ GiB"):
        probe(wl, device="cpu", memory_limit=limit)


PROBE_IN_FRESH_PROCESS = """
import json, sys
from autobatch.device import rss_bytes
from autobatch.measure.probe import probe
from tests.doubles import wide_workload
wl = wide_workload()
limit = rss_bytes() + 512 * 2**20  # room for the ~170 MiB model and ~200 samples
result = probe(wl, device="cpu", memory_limit=limit, headroom=0.1, use_cache=False)
json.dump({"limit": limit, **result.to_dict()}, sys.stdout)
"""


def test_probe_real_memory_limit_on_cpu():
    # A fresh process, as `autobatch probe` runs: the limit counts the whole process,
    # and a test runner that has grown by a gigabyte is not what users probe from.
    proc = subprocess.run([sys.executable, "-c", PROBE_IN_FRESH_PROCESS], capture_output=True,
                          text=True, timeout=300, cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    limit = result["limit"]
    assert result["limited_by"] == "memory" and result["isolation"] == "fork-per-candidate"
    assert result["usable_bytes"] == limit and result["budget_bytes"] == int(limit * 0.9)
    assert 8 < result["max_batch_size"] < 512
    # At most 6 forked candidates, one of them a batch run again in a fresh child: the
    # spread is at least the range of that batch's peaks, and the answer's peak plus it fits.
    attempts = result["attempts"]
    assert len(attempts) <= 6
    [again] = [i for i, a in enumerate(attempts) if a["repeat"]]
    batch = attempts[again]["batch_size"]
    assert batch in [a["batch_size"] for a in attempts[:again]]
    peaks = [a["peak_bytes"] for a in attempts if a["batch_size"] == batch]
    if None not in peaks:
        assert result["spread_bytes"] >= max(peaks) - min(peaks)
    assert result["peak_bytes"] + result["spread_bytes"] <= result["budget_bytes"]
    # Without the 10% headroom the model allows a larger batch.
    assert result["fits_batch_size"] > result["max_batch_size"]
    # About 1 MiB per sample: 4 x 128 KiB activations plus their tanh results.
    assert 0.5 * 2**20 < result["bytes_per_sample"] < 3 * 2**20
    # How close the answer is to the true maximum is measured by the benchmark (98%):
    # RSS readings of two separate probes scatter by over 5%, too much for a CI check.


HUNGRY_PROBE = """
import resource, sys, torch
from torch import nn
from autobatch import DoesNotFitError, Workload, probe
from autobatch.device import rss_bytes
from tests.conftest import blobs

class Hungry(nn.Linear):
    def forward(self, x):
        # touched, so resident: {gib} GiB whatever the batch
        scratch = torch.ones({gib} * 2**30 // 4)
        return super().forward(x) + scratch[0]

wl = Workload(name="hungry", model_factory=lambda: Hungry(8, 3), train_data=blobs(64),
              val_data=blobs(16), eval_batch_size=8)
limit = rss_bytes() + 512 * 2**20
try:
    probe(wl, device="cpu", memory_limit=limit, use_cache=False, min_batch={min_batch})
except DoesNotFitError as exc:
    print(exc, file=sys.stderr)
print(limit, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


@pytest.mark.parametrize(("gib", "min_batch"), [(2, 1), (3, 4)])
def test_probe_under_a_memory_limit_runs_no_step_past_it_in_its_own_process(gib, min_batch):
    """A model that allocates gigabytes in forward: the probe's own process (its
    warm-up included) never holds them; a capped child does, and is killed."""
    proc = subprocess.run([sys.executable, "-c", HUNGRY_PROBE.format(gib=gib,
                                                                   min_batch=min_batch)],
                          capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr
    assert re.search(rf"does not fit at batch {min(min_batch, 2)}: peak out of memory",
                     proc.stderr), proc.stderr
    limit, own_peak = map(int, proc.stdout.split())
    assert own_peak < limit


def test_run_in_child_forwards_progress_lines_as_they_arrive():
    heard: list[str] = []

    def child(send):
        for i in range(3):
            send(("progress", f"line {i}"))
            send(("step",))
        return "done"

    assert run_in_child(child, anon_cap=None, on_progress=heard.append) == ("done", 3)
    assert heard == ["line 0", "line 1", "line 2"]


@pytest.mark.slow
def test_a_probe_in_one_forked_child_reports_each_candidate():
    """The CUDA probe's path (the whole search in one child), driven on the CPU."""
    heard: list[str] = []
    job = _Job(workload=workload(), device=torch.device("cpu"), min_batch=1, max_batch=16,
               headroom=0.1, memory_limit=None, max_attempts=6, fingerprint="f",
               dtype="float32", isolate=True, progress=heard.append)
    result = job.in_child("subprocess")
    assert result.isolation == "subprocess" and result.max_batch_size == 16
    assert len(heard) == len(result.attempts)
    for line, a in zip(heard, result.attempts, strict=True):
        assert line.startswith(f"batch {a.batch_size}{' again' if a.repeat else ''}: ")


def test_probe_leaves_the_callers_model_and_optimizer_untouched():
    user_model = Net()
    user_optimizer = torch.optim.SGD(user_model.parameters(), lr=0.1, momentum=0.9)
    user_model(torch.randn(4, 8)).sum().backward()
    user_optimizer.step()
    user_optimizer.zero_grad(set_to_none=True)
    before = {k: v.clone() for k, v in user_model.state_dict().items()}
    optimizer_before = copy.deepcopy(user_optimizer.state_dict())
    wl = workload(model_factory=lambda: user_model)  # hands out the caller's object
    probe(wl, device="cpu", max_batch=16, use_cache=False)
    after = user_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert user_model.training and next(user_model.parameters()).grad is None
    optimizer_after = user_optimizer.state_dict()
    assert optimizer_after["param_groups"] == optimizer_before["param_groups"]
    assert all(torch.equal(optimizer_before["state"][i]["momentum_buffer"],
                           optimizer_after["state"][i]["momentum_buffer"])
               for i in optimizer_before["state"])


def test_a_probe_out_of_time_answers_what_it_measured_and_is_not_cached(cache_dir):
    wl = workload(model_factory=lambda: Net(23))
    result = probe(wl, device="cpu", deadline=time.perf_counter())  # no time at all
    assert [a.batch_size for a in result.attempts] == [1, 8]  # the first two always run
    assert result.max_batch_size == 8 and result.limited_by == "time"
    assert not list(cache_dir.glob("probe-*.json"))  # a longer --timeout probes again
    timed = probe(wl, device="cpu", deadline=time.perf_counter() + 600)
    assert timed.max_batch_size == 22 and timed.limited_by == "memory"
    assert len(list(cache_dir.glob("probe-*.json"))) == 1


def test_probe_cache_hit_miss_and_no_cache(cache_dir):
    wl = workload(model_factory=lambda: Net(23))
    first = probe(wl, device="cpu")
    again = probe(wl, device="cpu")
    assert not first.from_cache and again.from_cache
    assert again.max_batch_size == first.max_batch_size and again.attempts == first.attempts
    assert len(list(cache_dir.glob("probe-*.json"))) == 1
    assert not probe(wl, device="cpu", use_cache=False).from_cache
    assert not probe(wl, device="cpu", headroom=0.2).from_cache  # another key
    assert len(list(cache_dir.glob("probe-*.json"))) == 2
    for path in cache_dir.glob("probe-*.json"):
        path.write_text("{torn")  # a corrupt cache file is ignored and rewritten
    assert not probe(wl, device="cpu").from_cache
    assert probe(wl, device="cpu").from_cache


def test_probe_result_json_round_trip(tmp_path):
    result = probe(workload(model_factory=lambda: Net(23)), device="cpu", use_cache=False)
    text = json.dumps(result.to_dict(), allow_nan=False)
    assert ProbeResult.from_dict(json.loads(text)) == result
    result.save(tmp_path / "r.json")
    assert ProbeResult.load(tmp_path / "r.json") == result
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(min_batch=8, max_batch=4), ConfigError, "min_batch 8 is larger than max_batch 4"),
    (dict(min_batch=0), ConfigError, "min_batch must be an integer >= 1, got 0"),
    (dict(max_batch=65), ConfigError, "max_batch 65 is larger than the training set"),
    (dict(headroom=0.9), ConfigError, r"headroom must be in \[0, 0.9\), got 0.9"),
    (dict(headroom=-0.1), ConfigError, "headroom"),
    (dict(memory_limit=10 * 2**20), ConfigError, "below the model's fixed memory"),
    (dict(device="cuda"), DeviceError, "CUDA is not available"),
])
def test_probe_rejects_bad_options_before_any_candidate(kwargs, error, match):
    if kwargs.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(error, match=match):
        probe(workload(), **kwargs)


@pytest.mark.parametrize("text, value", [("1.5GiB", 1536 * 2**20), ("512MiB", 512 * 2**20),
                                         ("2GB", 2 * 10**9), ("4G", 4 * 2**30),
                                         ("4096", 4096)])
def test_parse_bytes(text, value):
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "1.5 GiBs", "-1GB", "0"])
def test_parse_bytes_rejects(text):
    with pytest.raises(ConfigError, match="memory size"):
        parse_bytes(text)


def always_oom() -> Workload:
    return workload(name="always-oom", model_factory=lambda: Net(1))


def oom_from_48() -> Workload:
    return workload(name="oom-from-48", model_factory=lambda: Net(48))


def test_cli_profile_with_probe_stays_within_the_largest_batch_that_fits():
    out = runner.invoke(app, ["profile", "-w", PROBE_TESTS + ":oom_from_48", "--device",
                              "cpu", "--probe", "--no-noise", "--json"])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)
    # Failures from 48 are OOMs without a peak: the probe bisects, within its 6 candidates.
    largest = payload["max_batch"]
    assert 24 <= largest <= 47
    sizes = [r["batch_size"] for r in payload["rows"]]
    assert sizes[-1] == largest and all(b < largest for b in sizes[:-1]) and len(sizes) >= 5
    assert all(r["fits"] for r in payload["rows"])  # without the probe, 64 and up OOM


def tiny_for_cli() -> Workload:
    return workload(name="cli-tiny", model_factory=lambda: Net(23))


runner = CliRunner()


def test_cli_probe_nothing_fits_exits_4():
    out = runner.invoke(app, ["probe", "-w", PROBE_TESTS + ":always_oom", "--device", "cpu"])
    assert out.exit_code == 4, out.output
    assert "does not fit at batch 1" in out.output


def test_cli_probe_json_is_strict_and_bad_options_exit_2():
    out = runner.invoke(app, ["probe", "-w", PROBE_TESTS + ":tiny_for_cli", "--device", "cpu",
                              "--memory-limit", "8GiB", "--no-cache", "--json"])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout, parse_constant=lambda c: pytest.fail(c))
    assert payload["max_batch_size"] == 22 and payload["memory_limit_bytes"] == 8 * 2**30
    # Memory does not limit this model (it raises OOM from 23), so no headroom changes it.
    assert payload["fits_batch_size"] == 22 and payload["spread_bytes"] >= 0
    assert [a["repeat"] for a in payload["attempts"]].count(True) == 1
    human = runner.invoke(app, ["probe", "-w", PROBE_TESTS + ":tiny_for_cli", "--device", "cpu"])
    assert human.exit_code == 0 and "max batch size" in human.output
    assert re.search(r"peak spread .* \(batch \d+ run twice", human.output), human.output
    assert "without headroom" in human.output and "headroom costs 0%" in human.output
    for bad in (["--headroom", "0.95"], ["--memory-limit", "lots"], ["--min-batch", "9",
                                                                      "--max-batch", "3"]):
        out = runner.invoke(app, ["probe", "-w", PROBE_TESTS + ":tiny_for_cli", *bad])
        assert out.exit_code == 2, (bad, out.output)


@pytest.mark.gpu
def test_probe_on_cuda_runs_in_a_subprocess():
    result = probe(workload(), device="cuda", use_cache=False)
    assert result.isolation == "subprocess" and result.device.type == "cuda"
    assert result.max_batch_size == 64 and result.device.total_bytes > 0
    assert not torch.cuda.is_initialized()  # the caller's process never touched CUDA


def test_cli_tune_nothing_fits_exits_4_before_creating_a_study(tmp_path):
    db = tmp_path / "study.db"
    out = runner.invoke(app, ["tune", "-w", PROBE_TESTS + ":always_oom", "--device", "cpu",
                              "--target", "0.9", "--storage", f"sqlite:///{db}", "--no-cache"])
    assert out.exit_code == 4, out.output
    assert "does not fit at batch 1" in out.output
    assert optuna.get_all_study_names(f"sqlite:///{db}") == []  # no half-made study


def batch_norm_net() -> nn.Module:
    """BatchNorm on one value per channel at batch 1: torch refuses to train it."""
    return nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))


def test_probe_starts_at_batch_2_for_a_model_that_cannot_train_at_batch_1(caplog):
    wl = workload(model_factory=batch_norm_net)
    with caplog.at_level("WARNING", logger="autobatch.measure.probe"):
        result = probe(wl, device="cpu")
    assert result.min_batch == 2 and result.max_batch_size == 64
    assert all(a.batch_size >= 2 for a in result.attempts)
    assert "probe-tiny cannot train at batch 1 (BatchNorm needs more than one value per " \
           "channel; input size torch.Size([1, 4])): probing from batch 2" in caplog.text


def test_a_batch_too_small_for_batch_norm_is_one_line_not_a_traceback():
    from autobatch.errors import BatchTooSmallError

    with pytest.raises(BatchTooSmallError, match="cannot train at batch 1") as info:
        probe(workload(model_factory=batch_norm_net), device="cpu", max_batch=1)
    assert pickle_round_trip(info.value).batch == 1  # crosses the probe's forked child
    assert info.value.exit_code == 2 and "--min-batch 2" in str(info.value)


def pickle_round_trip(exc: BaseException) -> BaseException:
    import pickle

    return pickle.loads(pickle.dumps(exc))
