"""The throughput profile as a picture: where more batch stops paying.

Three panels over batch size (log2 axis): time per iteration with the fitted
t(B) = alpha + beta * B, throughput with the knee, and time per epoch. The critical
batch estimate B_simple, when measured, is shaded on the throughput panel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autobatch.errors import ConfigError
from autobatch.measure import ProfileResult
from autobatch.report.canvas import figure, plain_log_y, png

FIT_COLOR = "#d62728"
DATA_COLOR = "#1f77b4"
KNEE_COLOR = "#2ca02c"
NOISE_COLOR = "#9467bd"
SIZE, DPI = (15, 4.6), 110


def plot_profile(result: ProfileResult, path: str | Path) -> Path:
    """Write the profile as a PNG to `path` and return the path."""
    path = Path(path)
    with figure(SIZE) as fig:
        _draw(fig, result)
        try:
            fig.savefig(path, dpi=DPI)
        except OSError as exc:
            raise ConfigError(f"cannot write plot to {str(path)!r}: {exc.strerror}") from None
    return path


def render_profile(result: ProfileResult) -> bytes:
    """The profile as PNG bytes (what the report and the dashboard show)."""
    return png(lambda fig: _draw(fig, result), SIZE, DPI)


def _draw(fig: Any, result: ProfileResult) -> None:
    import numpy as np

    rows = [r for r in result.rows if r.fits]
    if not rows:
        raise ConfigError("nothing to plot: no batch size of the profile fits")
    sizes = np.array([r.batch_size for r in rows], dtype=float)
    iter_ms = np.array([r.iter_s for r in rows]) * 1e3
    err = np.array([[r.iter_s - r.iter_s_min, r.iter_s_max - r.iter_s] for r in rows]).T * 1e3
    throughput = np.array([r.samples_per_s for r in rows])
    epoch_s = np.array([r.epoch_s for r in rows])
    grid = np.geomspace(sizes.min(), sizes.max(), 200)
    fitted = result.alpha is not None and result.beta is not None

    # a script's profile has no epoch (autobatch never sees its data): two panels
    axes = fig.subplots(1, 3 if result.train_size else 2)
    ax_iter, ax_thr, ax_epoch = (*axes, None)[:3]
    ax_iter.errorbar(sizes, iter_ms, yerr=err, fmt="o", color=DATA_COLOR, capsize=3,
                     label="measured (median, min-max)")
    ax_thr.plot(sizes, throughput, "o-", color=DATA_COLOR, label="measured")
    if ax_epoch is not None:
        ax_epoch.plot(sizes, epoch_s, "o-", color=DATA_COLOR, label="measured")
    if fitted:
        model_s = result.alpha + result.beta * grid
        label = (f"fit {result.alpha * 1e3:.2f} ms + {result.beta * 1e6:.2f} µs·B"
                 f" (error {result.fit_error:.0%})")
        ax_iter.plot(grid, model_s * 1e3, "-", color=FIT_COLOR, label=label)
        ax_thr.plot(grid, grid / model_s, "-", color=FIT_COLOR, alpha=0.7, label="fit")
        if ax_epoch is not None:
            ax_epoch.plot(grid, result.train_size / grid * model_s, "-", color=FIT_COLOR,
                          alpha=0.7, label="fit (N / B) x t(B)")
        if result.b_sat is not None and sizes.min() <= result.b_sat <= sizes.max():
            ax_iter.axvline(result.b_sat, color=FIT_COLOR, ls=":",
                            label=f"B_sat = α/β = {result.b_sat:.0f}")
    if result.knee is not None:
        for ax in axes:
            ax.axvline(result.knee, color=KNEE_COLOR, ls="--",
                       label=f"knee B = {result.knee} (last doubling that adds "
                             f">= {result.knee_gain:.0%} samples/s)" if ax is ax_thr else None)
    noise = result.noise
    if noise is not None and noise.b_simple is not None:
        low = noise.low if noise.low is not None else noise.b_simple
        high = noise.high if noise.high is not None else sizes.max()
        ax_thr.axvspan(low, high, color=NOISE_COLOR, alpha=0.12)
        ax_thr.axvline(noise.b_simple, color=NOISE_COLOR, ls="-.",
                       label=f"B_simple = {noise.b_simple:.0f} [{low:.0f}, {high:.0f}]")

    titles = ("time per iteration", "throughput", "time per epoch")
    ylabels = ("ms per iteration", "samples / s", "seconds per epoch")
    for ax, title, ylabel in zip(axes, titles, ylabels):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xticks(sizes)
        ax.set_xticklabels([f"{int(s)}" for s in sizes], rotation=45)
        ax.tick_params(axis="x", which="minor", bottom=False, labelbottom=False)
        plain_log_y(ax.yaxis)
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(f"{result.workload} on {result.device}: throughput profile "
                 f"({result.seconds:.1f} s)", fontsize=12)
