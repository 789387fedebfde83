"""The profile picture: a real PNG of a sensible size, and clear errors."""

import pytest

from autobatch import ConfigError, profile
from autobatch.report.plots import plot_profile
from tests.conftest import tiny_workload
from tests.doubles import FakeClock, timed_linear_factory


@pytest.fixture(scope="module")
def result():
    clock = FakeClock()
    return profile(tiny_workload(n_train=512, model_factory=timed_linear_factory(clock)),
                   device="cpu", batch_sizes=[8, 16, 32, 64, 128, 256, 1024], clock=clock)


def test_plot_profile_writes_a_png_of_sensible_size(result, tmp_path):
    import matplotlib.image

    path = plot_profile(result, tmp_path / "profile.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = matplotlib.image.imread(path).shape
    assert 1200 <= width <= 2400 and 400 <= height <= 900
    assert path.stat().st_size > 20_000  # curves, labels and legends, not a blank canvas


def test_a_profile_without_an_epoch_draws_two_panels_without_warnings(result, tmp_path):
    """A script's profile: autobatch never sees its data, so there is no epoch."""
    import dataclasses
    import warnings

    import matplotlib.image

    scripted = dataclasses.replace(result, train_size=0,
                                   rows=tuple(dataclasses.replace(r, steps_per_epoch=None,
                                                                  epoch_s=None)
                                              for r in result.rows))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = plot_profile(scripted, tmp_path / "profile.png")
    full = matplotlib.image.imread(plot_profile(result, tmp_path / "full.png")).shape
    assert matplotlib.image.imread(path).shape == full  # the same canvas, two panels on it


def test_plot_profile_to_an_unwritable_path_is_a_config_error(result, tmp_path):
    with pytest.raises(ConfigError, match="cannot write plot"):
        plot_profile(result, tmp_path / "missing" / "profile.png")


def test_plot_profile_with_nothing_measured_is_a_config_error(tmp_path):
    nothing = profile(tiny_workload(), device="cpu", batch_sizes=[64], max_batch=32,
                      noise=False)
    with pytest.raises(ConfigError, match="no batch size"):
        plot_profile(nothing, tmp_path / "p.png")


@pytest.mark.parametrize(("low", "high"),
                         [(0.05, 0.1), (0.06, 0.27), (0.6, 4.2), (1.1, 1.3), (0.05, 40.0)])
def test_plain_log_y_labels_several_ticks_however_narrow_the_data(low, high):
    from matplotlib.figure import Figure

    from autobatch.report.canvas import plain_log_y

    fig = Figure()
    ax = fig.subplots()
    ax.plot([1, 2], [low, high])
    ax.set_yscale("log")
    plain_log_y(ax.yaxis)
    fig.canvas.draw()
    bottom, top = ax.get_ylim()
    labels = [t.get_text() for t in ax.yaxis.get_majorticklabels() + ax.yaxis.get_minorticklabels()
              if bottom <= t.get_position()[1] <= top and t.get_text()]
    assert len(labels) >= 3, labels
    assert not any("10^" in text or "times" in text for text in labels), labels
