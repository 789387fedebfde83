"""Shared fixtures: tiny workloads that train in milliseconds on the CPU."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from autobatch import Hyperparams, TensorData, Workload
from autobatch.candidate import Candidate
from autobatch_cli.main import app

FIXTURES = Path(__file__).parent / "fixtures"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is visible")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def blobs(n: int, *, classes: int = 3, dim: int = 8, seed: int = 0) -> TensorData:
    """Linearly separable Gaussian blobs: a task a linear model learns in a few steps."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=g) * 4
    y = torch.randint(0, classes, (n,), generator=g)
    x = centers[y] + torch.randn(n, dim, generator=g)
    return TensorData(x, y)


def tiny_workload(n_train: int = 256, n_val: int = 64, **overrides) -> Workload:
    fields = dict(name="tiny", model_factory=lambda: nn.Linear(8, 3),
                  train_data=blobs(n_train, seed=0), val_data=blobs(n_val, seed=0))
    fields.update(overrides)
    return Workload(**fields)


def unreachable_workload(**overrides) -> Workload:
    """tiny_workload with its validation labels shifted by one: no target is ever reached."""
    val = blobs(64, seed=0)
    return tiny_workload(val_data=TensorData(val.x, (val.y + 1) % 3), **overrides)


def candidate(name: str = "trial 3", runs: tuple = (1.0, 2.0, None), tuned: bool = True,
              trial_number: int | None = 3, **recipe) -> Candidate:
    """A verified candidate: batch 256, LR 0.3, momentum 0.9 unless `recipe` says else."""
    hparams = Hyperparams(**{"batch_size": 256, "lr": 0.3, "momentum": 0.9, **recipe})
    return Candidate(name=name, hparams=hparams, tuned=tuned, trial_number=trial_number,
                     study_value=1.1, runs=runs)


def default_interrupts() -> None:
    """A shell that runs a command in the background (as some CI runners start the
    suite) makes it ignore SIGINT, and children inherit that; a command started from a
    terminal does not, so give the child the terminal's default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def autobatch(*args, env=None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "autobatch_cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NO_COLOR": "1", **(env or {})},
                            preexec_fn=default_interrupts, **kwargs)


def invoke(*args: str):
    """`autobatch ARGS` in this process (typer's runner): exit code, stdout, stderr."""
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def tiny() -> Workload:
    return tiny_workload()


@pytest.fixture
def fixtures_on_path():
    sys.path.insert(0, str(FIXTURES))
    yield FIXTURES
    sys.path.remove(str(FIXTURES))
    for name in [m for m in sys.modules if m.startswith("user_")]:
        del sys.modules[name]


PG_URL = os.environ.get("AUTOBATCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_url() -> str:
    """The PostgreSQL server of this machine; CI (.ci/run) makes sure it runs."""
    import psycopg

    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL server at {PG_URL}: {exc}")
    return PG_URL


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Probe and profile caches in a folder of this test session, shared by its tests
    (and the processes they start), never the user's ~/.cache."""
    folder = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("AUTOBATCH_CACHE_DIR")
    os.environ["AUTOBATCH_CACHE_DIR"] = str(folder)
    yield folder
    if previous is None:
        del os.environ["AUTOBATCH_CACHE_DIR"]
    else:
        os.environ["AUTOBATCH_CACHE_DIR"] = previous
