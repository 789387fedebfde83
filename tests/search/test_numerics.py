"""The study over global batches: accumulation per trial and the precision it trains in."""

import functools

import optuna
import pytest
import torch

from autobatch.config import SearchBounds
from autobatch.errors import ConfigError
from autobatch.measure import ProfileResult, ProfileRow
from autobatch.search import prior
from autobatch.search.precision_choice import (
    choose_precision,
    largest_global_batch,
    precision_candidates,
    seconds_per_sample,
)
from autobatch.search.prior import Prior, measure_prior
from autobatch.search.space import SearchSpace, accumulation
from tests.conftest import invoke, tiny_workload


@pytest.mark.parametrize(("batch", "micro_max", "grad_accum"), [
    (64, 64, 1), (64, 100, 1), (64, 32, 2), (64, 20, 4), (96, 40, 3), (7, 3, 7), (1, 1, 1),
])
def test_accumulation_is_the_fewest_even_micro_batches_that_fit(batch, micro_max, grad_accum):
    assert accumulation(batch, micro_max) == grad_accum


def space(**numerics) -> SearchSpace:
    return SearchSpace(batch_sizes=(16, 64, 256), anchor_batch=64, lr_range=(0.01, 1.0),
                       **numerics)


@pytest.mark.parametrize(("numerics", "expected"), [
    ({}, {16: 1, 64: 1, 256: 1}),
    ({"grad_accum": 2}, {16: 2, 64: 2, 256: 2}),
    ({"micro_max": 32, "precision": "bf16"}, {16: 1, 64: 2, 256: 8}),
])
def test_each_trial_computes_its_global_batch_in_the_spaces_micro_batches(numerics, expected):
    s = space(**numerics)
    for batch, grad_accum in expected.items():
        hp = s.suggest(optuna.trial.FixedTrial({"batch_size": batch, "lr0": 0.1,
                                                "lr_scaling": 1.0, "one_minus_momentum": 0.1}))
        assert (hp.batch_size, hp.grad_accum) == (batch, grad_accum)
        assert hp.precision == numerics.get("precision", "fp32")
        # the LR stays coupled to the global batch
        assert hp.lr == pytest.approx(0.1 * batch / 64)
    assert SearchSpace.from_dict(s.to_dict()) == s


@pytest.mark.parametrize(("grad_accum", "max_batch", "top"), [
    (1, None, 100), (4, None, 400), (4, 256, 256), ("auto", None, 1000), ("auto", 512, 512),
])
def test_the_largest_global_batch_grows_with_accumulation(grad_accum, max_batch, top):
    bounds = SearchBounds(grad_accum=grad_accum, max_batch=max_batch)
    assert largest_global_batch(bounds, micro_max=100, n_train=1000) == top


def profile_of(*rows: tuple[int, float | None]) -> ProfileResult:
    return ProfileResult(
        workload="w", device="cpu", train_size=1000, max_batch=64, alpha=None, beta=None,
        b_sat=None, fit_error=None, knee=None, knee_gain=0.1, eval_pass_s=None, noise=None,
        seconds=1.0, torch_version="", threads=1,
        rows=tuple(ProfileRow(batch_size=b, fits=t is not None, iter_s=t) for b, t in rows))


def test_precision_auto_picks_the_least_time_per_sample_and_reports_every_figure():
    profiles = {"fp32": profile_of((16, 1.6e-3), (64, 3.2e-3)),
                "bf16": profile_of((16, 1.0e-3), (64, 1.6e-3), (128, None))}
    choice = choose_precision(("fp32", "bf16"), lambda p: (f"kept {p}", profiles[p]))
    assert (choice.precision, choice.measured) == ("bf16", "kept bf16")
    assert choice.seconds_per_sample == pytest.approx({"fp32": 5e-5, "bf16": 2.5e-5})
    assert choice.words() == ("training in bf16: least profiled time per sample (fp32 50 µs, "
                              "bf16 25 µs); its effect on accuracy is not modelled")
    assert seconds_per_sample(profile_of((8, None))) is None
    assert precision_candidates(torch.device("cpu")) == ("fp32", "bf16")


def probed_at_most(limit: int, monkeypatch) -> None:
    """The probe as on a device that fits `limit` samples at once, and a profile without
    the noise scale (quicker)."""
    real = prior.probe
    monkeypatch.setattr(prior, "probe", lambda *a, **k: real(*a, **{**k, "max_batch": limit}))
    monkeypatch.setattr(prior, "profile", functools.partial(prior.profile, noise=False))


def test_a_study_with_accumulation_searches_batches_above_what_fits_at_once(monkeypatch):
    probed_at_most(16, monkeypatch)
    events = []
    found = measure_prior(tiny_workload(), SearchBounds(batch_size=64, grad_accum="auto",
                                                        lr=0.1, momentum=0.9),
                          torch.device("cpu"), events.append, headroom=0.1,
                          memory_limit=None, use_cache=False, seed=0,
                          saved_profile=profile_of((8, 1e-3), (16, 1.5e-3)))
    assert found.probe.max_batch_size == 16 and found.space.batch_sizes == (64,)
    assert found.space.numerics(64) == {"grad_accum": 4, "precision": "fp32",
                                        "channels_last": False}
    assert Prior.from_dict(found.to_dict()).space == found.space


@pytest.mark.slow
def test_precision_auto_profiles_fp32_and_bf16_and_keeps_the_figures(monkeypatch):
    probed_at_most(64, monkeypatch)
    events = []
    found = measure_prior(tiny_workload(), SearchBounds(precision="auto", lr=0.1,
                                                        momentum=0.9),
                          torch.device("cpu"), events.append, headroom=0.1,
                          memory_limit=None, use_cache=False, seed=0)
    assert set(found.precision_figures) == {"fp32", "bf16"}
    assert found.space.precision == found.profile.precision == found.probe.precision
    assert [e.message for e in events if e.name == "precision"][0].startswith(
        f"training in {found.space.precision}: least profiled time per sample (fp32 ")


TUNE_BAD_INPUT = [
    (["--grad-accum", "0"], "grad_accum must be 'auto' or a whole number >= 1, got '0'"),
    (["--grad-accum", "many"], "grad_accum must be 'auto' or a whole number >= 1"),
    (["--batch-size", "100", "--grad-accum", "3"],
     "batch size 100 is not divisible by accumulation steps 3"),
    (["--precision", "fp8"], "precision must be one of auto, fp32, bf16, fp16, got 'fp8'"),
    (["--precision", "fp16", "--device", "cpu"], "precision 'fp16' needs a CUDA device"),
    (["--channels-last", "--workload", "mnist1d-cnn"], "channels_last needs 4-D inputs"),
]


@pytest.mark.parametrize(("args", "message"), TUNE_BAD_INPUT)
def test_tune_bad_numerics_exit_2_before_a_study_is_created(tmp_path, args, message):
    result = invoke("tune", "--workload", "digits-cnn", "--target", "0.9",
                    "--storage", f"sqlite:///{tmp_path}/study.db", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr.replace("\n", " ")
    assert not (tmp_path / "study.db").exists()


def test_search_bounds_refuse_a_fixed_batch_the_accumulation_does_not_divide():
    with pytest.raises(ConfigError, match="batch size 10 is not divisible by accumulation"):
        SearchBounds(batch_size=10, grad_accum=4)


def test_the_report_says_how_the_trials_compute_their_batch():
    from autobatch.report.facts import numerics_words

    assert numerics_words(space().to_dict(), None) == ""
    assert numerics_words(space(micro_max=32, precision="bf16").to_dict(),
                          {"fp32": 5e-5, "bf16": 2.5e-5, "fp16": None}) == (
        "micro-batches of at most 32 (accumulation per batch); bf16 (least time per sample: "
        "fp32 50 µs, bf16 25 µs, fp16 -; accuracy effects not modelled)")
    assert numerics_words(space(grad_accum=4, channels_last=True).to_dict(), None) == \
        "4 micro-batches per step; channels-last"
