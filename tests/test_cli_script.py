"""`autobatch tune -- COMMAND`: the command line's side of tuning a plain script."""

import json
import sys

import autobatch.script as script
from tests.conftest import invoke


def test_a_workload_and_a_command_are_refused_together():
    result = invoke("tune", "--workload", "digits-cnn", "--target", "0.9", "--",
                    sys.executable, "train.py")
    assert result.exit_code == 2
    assert "give --workload or a script command after `--`, not both" in result.output


def test_an_unbounded_script_batch_is_refused_before_the_storage(tmp_path):
    db = tmp_path / "s.db"
    result = invoke("tune", "--target", "0.9", "--storage", f"sqlite:///{db}", "--",
                    sys.executable, "train.py", "--epochs", "3")
    assert result.exit_code == 2
    assert "a script's batch must be bounded: give --max-batch" in result.output
    assert not db.exists()


def test_an_empty_script_command_is_named():
    result = invoke("tune", "--workload", "script:", "--target", "0.9", "--max-batch", "8")
    assert result.exit_code == 2 and "the script command is empty" in result.output


STUB = f"""\
import importlib.util
spec = importlib.util.spec_from_file_location("trial_api", {script.__file__!r})
api = importlib.util.module_from_spec(spec)
spec.loader.exec_module(api)
trial = api.trial()
for metric in (0.4, 0.8, 0.95):
    for _ in range(2):
        trial.step()
    if trial.report(metric=metric):
        break
"""


def test_run_trains_one_recipe_of_a_script(tmp_path):
    (tmp_path / "train.py").write_text(STUB)
    result = invoke("run", "--batch-size", "16", "--lr", "0.2", "--target", "0.9", "--json",
                    "--", sys.executable, str(tmp_path / "train.py"))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["target_reached"] and data["steps_to_target"] == 6
    assert data["config"]["batch_size"] == 16 and data["config"]["lr"] == 0.2


def test_run_of_a_script_needs_its_recipe():
    result = invoke("run", "--batch-size", "16", "--", sys.executable, "train.py")
    assert result.exit_code == 2
    assert "a script has no reference recipe: give --batch-size and --lr" in result.output
