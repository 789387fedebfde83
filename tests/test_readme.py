"""The README's examples are run, so they cannot rot."""

import re
import subprocess
import sys
from pathlib import Path

README = (Path(__file__).parent.parent / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def block_starting(marker: str) -> str:
    (block,) = [b for b in PYTHON_BLOCKS if b.lstrip().startswith(marker)]
    return block


def test_readme_user_workload_runs_as_an_entry_point(tmp_path):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "train.py").write_text(block_starting("# mypkg/train.py"))
    proc = subprocess.run(
        [sys.executable, "-m", "autobatch_cli", "run", "--workload", "mypkg.train:workload",
         "--app-dir", str(tmp_path), "--budget", "30steps", "--json"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert '"workload": "my-mlp"' in proc.stdout and '"steps": 30' in proc.stdout


def test_readme_python_run_example_reaches_the_target():
    namespace: dict = {}
    code = block_starting("import autobatch\n\nworkload = autobatch.load_workload(\"mnist1d-cnn\")")
    exec(code, namespace)  # noqa: S102 - the README's own example
    result = namespace["result"]
    assert result.target_reached and result.steps_to_target > 0
