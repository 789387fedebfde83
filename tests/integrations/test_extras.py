"""The frameworks are optional: the core never imports them, and a missing one is a
one-line error naming the extra that installs it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import FIXTURES

BLOCK = "import sys; sys.modules['{0}'] = None; sys.modules['{0}.pytorch'] = None; "


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow  # a fresh interpreter imports torch
def test_the_core_and_the_command_line_import_no_framework():
    proc = python("import sys, autobatch, autobatch_cli.main, autobatch.integrations\n"
                  "from autobatch.workloads import kind_of\n"
                  "assert kind_of('lightning:m:C').name == 'lightning'\n"
                  "print(sorted(m for m in ('lightning', 'transformers', 'accelerate') "
                  "if m in sys.modules))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.slow  # a fresh interpreter imports torch
def test_a_lightning_workload_without_lightning_exits_2_naming_the_extra():
    argv = ["autobatch", "probe", "--workload", "lightning:user_lightning:Counted",
            "--datamodule", "user_lightning:Blobs", "--metric", "val_acc",
            "--app-dir", str(FIXTURES), "--device", "cpu"]
    proc = python(BLOCK.format("lightning") + f"sys.argv = {argv!r}; "
                  "from autobatch_cli.entry import main; main()")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ["error: lightning.pytorch is not installed: "
                     "pip install 'autobatch[lightning]'"], proc.stderr


@pytest.mark.slow  # a fresh interpreter imports torch
def test_the_transformers_helpers_without_transformers_name_the_extra():
    proc = python(BLOCK.format("transformers") +
                  "from autobatch import WorkloadError\n"
                  "try:\n    import autobatch.integrations.transformers\n"
                  "except WorkloadError as exc:\n    print(exc)")
    assert proc.stdout.strip() == ("transformers is not installed: "
                                   "pip install 'autobatch[transformers]'"), proc.stderr
