import pytest

from autobatch import Budget, ConfigError, RunConfig
from autobatch.config import TuneConfig


@pytest.mark.parametrize(("text", "expected"), [
    ("60s", Budget(seconds=60)),
    ("60", Budget(seconds=60)),
    ("2.5s", Budget(seconds=2.5)),
    ("10m", Budget(seconds=600)),
    ("1h", Budget(seconds=3600)),
    ("2000steps", Budget(steps=2000)),
    ("1 step", Budget(steps=1)),
    ("5epochs", Budget(epochs=5)),
    ("0.5epoch", Budget(epochs=0.5)),
])
def test_budget_parse_accepts_units(text, expected):
    assert Budget.parse(text) == expected


@pytest.mark.parametrize(("text", "match"), [
    ("", "budget must look like"),
    ("ten seconds", "budget must look like"),
    ("5 parsecs", "budget must look like"),
    ("0s", "budget must be > 0"),
    ("1.5steps", "whole number"),
])
def test_budget_parse_rejects_bad_text(text, match):
    with pytest.raises(ConfigError, match=match):
        Budget.parse(text)


def test_budget_needs_exactly_one_limit():
    with pytest.raises(ConfigError, match="exactly one"):
        Budget(seconds=1, steps=2)
    with pytest.raises(ConfigError, match="exactly one"):
        Budget()


def test_budget_str_round_trips():
    for text in ("60s", "2000steps", "5epochs"):
        assert str(Budget.parse(text)) == text


@pytest.mark.parametrize(("field", "value", "match"), [
    ("batch_size", 0, "batch_size must be an integer >= 1, got 0"),
    ("batch_size", 2.5, "batch_size must be an integer"),
    ("batch_size", True, "batch_size must be an integer"),
    ("lr", 0.0, "lr must be > 0, got 0.0"),
    ("lr", -1.0, "lr must be > 0"),
    ("lr", float("nan"), "lr must be > 0"),
    ("momentum", 1.0, r"momentum must be in \[0, 1\), got 1.0"),
    ("momentum", -0.1, "momentum must be in"),
    ("target", 0.0, r"target must be in \(0, 1\], got 0.0"),
    ("target", 1.5, "target must be in"),
    ("optimizer", "lbfgs", "optimizer must be 'sgd' or 'adam'"),
    ("eval_resolution", 0.0, "eval_resolution must be in"),
])
def test_run_config_rejects_bad_values_naming_the_field(field, value, match):
    fields = {"batch_size": 32, "lr": 0.1, field: value}
    with pytest.raises(ConfigError, match=match):
        RunConfig(**fields)


def test_run_config_is_frozen_and_keyword_only():
    config = RunConfig(batch_size=32, lr=0.1)
    with pytest.raises(AttributeError):
        config.lr = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        RunConfig(32, 0.1)  # type: ignore[misc]


def test_a_memory_size_says_which_unit_it_was_read_in():
    from autobatch.memory_size import bytes_in_words

    assert bytes_in_words("4GB") == ("4GB = 4,000,000,000 bytes = 3.73 GiB (KB, MB, GB, TB: "
                                     "powers of 1000; KiB, MiB, GiB, TiB: of 1024)")
    assert bytes_in_words("4GiB") == ("4GiB = 4,294,967,296 bytes = 4.00 GiB (binary units: "
                                      "powers of 1024; KB, MB, GB, TB are powers of 1000)")
    assert bytes_in_words("4G").startswith("4G = 4,294,967,296 bytes")


def test_the_verification_race_refuses_fewer_rounds_than_its_minimum():
    with pytest.raises(ConfigError, match=r"verify_max_runs \(2\) must be >= verify_runs \(3\)"):
        TuneConfig(target=0.9, verify_max_runs=2)
