"""Shared by the benchmark scripts: the machine header and RESULTS.md sections."""

from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path

import optuna
import torch

import autobatch

RESULTS = Path(__file__).with_name("RESULTS.md")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_lines(command: str) -> list[str]:
    """Date, machine, versions and the exact command, as Markdown bullet lines."""
    return [
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- Machine: {cpu_model()}, {os.cpu_count()} cores, torch threads "
        f"{torch.get_num_threads()}; shared and noisy (+-30% run to run)",
        f"- Versions: autobatch {autobatch.__version__}, torch {torch.__version__}, "
        f"optuna {optuna.__version__}, Python {platform.python_version()}",
        f"- Command: `{command}`",
    ]


def write_section(heading: str, body: str) -> None:
    """Replace (or append) the section starting at `heading` in RESULTS.md, atomically."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    block = body.rstrip() + "\n\n"
    text = pattern.sub(lambda _: block, text) if pattern.search(text) \
        else text.rstrip() + "\n\n" + block
    tmp = RESULTS.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, RESULTS)
