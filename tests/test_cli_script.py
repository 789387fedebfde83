"""`autobatch tune -- COMMAND`: the command line's side of tuning a plain script."""

import sys

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
