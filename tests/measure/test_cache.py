"""The measurement cache: one file per kind and key, measured once, read afterwards."""

import hashlib

from autobatch.files import JsonFile
from autobatch.measure.cache import cache_path, cached


class Result(JsonFile):
    what = "result"

    def __init__(self, value: int) -> None:
        self.value = value

    def to_dict(self) -> dict:
        return {"value": self.value}

    @classmethod
    def from_dict(cls, data: dict) -> "Result":
        return cls(data["value"])


class Measure:
    """A measurement that returns `value` and counts how often it ran."""

    def __init__(self, value: int) -> None:
        self.value, self.calls = value, 0

    def __call__(self) -> Result:
        self.calls += 1
        return Result(self.value)


def test_cache_path_is_the_kind_and_a_hash_of_the_key(tmp_path):
    # The naming is what keeps cache files written by earlier versions valid.
    digest = hashlib.sha256(b"some key").hexdigest()[:20]
    assert cache_path("probe", "some key", tmp_path) == tmp_path / f"probe-{digest}.json"
    assert cache_path("probe", "other key", tmp_path) != cache_path("probe", "some key",
                                                                    tmp_path)


def test_cache_path_defaults_to_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(tmp_path / "cache"))
    assert cache_path("profile", "k").parent == tmp_path / "cache"


def test_cached_measures_once_per_key_then_loads(tmp_path):
    measure = Measure(1)
    first = cached("probe", "k", measure, Result.load, folder=tmp_path / "new")
    again = cached("probe", "k", measure, Result.load, folder=tmp_path / "new")
    assert (first.value, again.value, measure.calls) == (1, 1, 1)
    cached("probe", "another key", measure, Result.load, folder=tmp_path / "new")
    assert measure.calls == 2 and len(list((tmp_path / "new").iterdir())) == 2


def test_cached_replaces_an_unreadable_file(tmp_path):
    path = cache_path("probe", "k", tmp_path)
    path.write_text("{torn")
    measure = Measure(2)
    assert cached("probe", "k", measure, Result.load, folder=tmp_path).value == 2
    assert measure.calls == 1 and Result.load(path).value == 2


def test_cached_without_the_cache_neither_reads_nor_writes_it(tmp_path):
    cached("probe", "k", Measure(1), Result.load, folder=tmp_path)
    measure = Measure(2)
    fresh = cached("probe", "k", measure, Result.load, use_cache=False, folder=tmp_path)
    assert fresh.value == 2 and measure.calls == 1
    assert Result.load(cache_path("probe", "k", tmp_path)).value == 1


def test_an_untrusted_result_is_never_written_and_an_untrusted_file_never_read(tmp_path):
    def positive(result: Result) -> bool:
        return result.value > 0

    bad = Measure(-1)
    assert cached("profile", "k", bad, Result.load, folder=tmp_path, trusted=positive).value \
        == -1
    assert not cache_path("profile", "k", tmp_path).exists()
    cached("profile", "k", Measure(-2), Result.load, folder=tmp_path)  # written untested
    good = Measure(3)
    assert cached("profile", "k", good, Result.load, folder=tmp_path,
                  trusted=positive).value == 3
    assert good.calls == 1 and Result.load(cache_path("profile", "k", tmp_path)).value == 3
