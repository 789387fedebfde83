"""Fixtures of the report tests: a headless Chromium and the folder for its screenshots."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def chromium() -> Callable[..., str]:
    """chromium(url, *flags, timeout=30): run headless Chromium once and return its stdout
    (the DOM with --dump-dom). Skips the test where no Chromium is installed."""
    if CHROMIUM is None:
        pytest.skip("needs Chromium (apt-get install -y chromium); .ci/run installs it")

    def run(url: str, *flags: str, timeout: float = 30) -> str:
        done = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-quic", *flags, url],
            capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    return run


@pytest.fixture
def artifacts() -> Path:
    """The repository's artifacts/ folder (git-ignored): the screenshots to look at."""
    folder = Path(__file__).resolve().parents[2] / "artifacts"
    folder.mkdir(exist_ok=True)
    return folder
