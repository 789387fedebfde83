import json

import optuna
import pytest

from autobatch.errors import ConfigError
from autobatch.storage import StorageError, mask_url, open_storage, storage_file
from tests.conftest import invoke


@pytest.mark.parametrize(("name", "url", "match"), [
    ("bad.db", "sqlite:///{path}", "is not a readable SQLite study database"),
    ("bad.log", "journal:///{path}", "is not a readable study journal"),
])
def test_a_corrupt_storage_file_is_reported_with_a_hint_and_never_written(
        tmp_path, name, url, match):
    path = tmp_path / name
    garbage = bytes(range(256)) * 16
    path.write_bytes(garbage)
    with pytest.raises(StorageError, match=match + ".*left untouched"):
        open_storage(url.format(path=path))
    result = invoke("tune", "--workload", "digits-cnn", "--target", "0.9", "--storage",
                    url.format(path=path))
    assert result.exit_code == 2 and "left untouched" in result.stderr
    assert path.read_bytes() == garbage


def test_a_torn_journal_line_is_skipped_and_the_study_is_kept(tmp_path):
    path = tmp_path / "study.log"
    url = f"journal:///{path}"
    study = optuna.create_study(storage=open_storage(url), study_name="s")
    study.tell(study.ask(), 1.0)
    with path.open("a") as log:  # a writer killed in the middle of a line
        log.write(json.dumps({"op_code": 5, "worker_id": "w"})[:12])
    reopened = optuna.load_study(study_name="s", storage=open_storage(url))
    assert len(reopened.trials) == 1 and reopened.trials[0].value == 1.0
    reopened.tell(reopened.ask(), 2.0)  # written after the torn line, not onto it
    again = optuna.load_study(study_name="s", storage=open_storage(url))
    assert [t.value for t in again.trials] == [1.0, 2.0]


def test_storage_file_names_the_file_of_local_backends(tmp_path):
    assert storage_file(f"sqlite:///{tmp_path}/a.db") == tmp_path / "a.db"
    assert storage_file(f"journal:///{tmp_path}/a.log") == tmp_path / "a.log"
    assert storage_file("postgresql://u:p@h/db") is None
    assert mask_url("postgresql://u:p@h/db") == "postgresql://u:***@h/db"


@pytest.mark.parametrize(("url", "masked"), [
    ("postgresql://u:p@h/db", "postgresql://u:***@h/db"),
    ("postgresql+psycopg://u:p%40ss@h:5432/db", "postgresql+psycopg://u:***@h:5432/db"),
    ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),  # a raw '@' in the password
    ("postgresql://u@h/db", "postgresql://u@h/db"),
    ("sqlite:////tmp/a@b.db", "sqlite:////tmp/a@b.db"),
    ("postgresql://u@h/db?password=S3cret", "postgresql://u@h/db?password=***"),
    ("postgresql://u@h/db?sslmode=require&PASSWORD=S3%40c&x=1",
     "postgresql://u@h/db?sslmode=require&PASSWORD=***&x=1"),
    ("postgresql://u@h/db?password=S3&cret&x=1", "postgresql://u@h/db?password=***&x=1"),
    ("postgresql://u:p@h/db?sslpassword=k3y@x", "postgresql://u:***@h/db?sslpassword=***"),
    ("postgresql://u@/db?host=/run/pg&passfile=/p/.pgpass&application_name=a",
     "postgresql://u@/db?host=/run/pg&passfile=***&application_name=a"),
])
def test_mask_url_hides_the_whole_password(url, masked):
    assert mask_url(url) == masked


def test_a_raw_at_sign_in_a_password_is_refused_without_showing_it():
    with pytest.raises(ConfigError, match="raw '@': URL-encode") as info:
        open_storage("postgresql://u:s3cr@tword@h/db")
    assert "s3cr" not in str(info.value) and "tword" not in str(info.value)


@pytest.mark.parametrize("value", ["0", "ten", "-3", "1.5"])
def test_a_bad_heartbeat_variable_is_refused_before_the_storage_is_opened(
        tmp_path, monkeypatch, value):
    monkeypatch.setenv("AUTOBATCH_HEARTBEAT_S", value)
    with pytest.raises(ConfigError, match="AUTOBATCH_HEARTBEAT_S must be a whole number"):
        open_storage(f"sqlite:///{tmp_path}/a.db")
    assert not (tmp_path / "a.db").exists()
