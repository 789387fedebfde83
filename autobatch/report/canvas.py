"""Where every picture of the report is drawn: a matplotlib figure without a display, and
the log-axis labels they share."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def figure(size: tuple[float, float]) -> Iterator[Any]:
    """A fresh figure, closed afterwards: pyplot keeps every figure alive until then."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; safe in CI and over ssh
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=size, constrained_layout=True)
    try:
        yield fig
    finally:
        plt.close(fig)


def png(draw: Callable[[Any], None], size: tuple[float, float], dpi: int) -> bytes:
    """Run draw(figure) on a fresh figure and return it as PNG bytes."""
    with figure(size) as fig:
        draw(fig)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        return buffer.getvalue()


def plain_log_y(axis: Any) -> None:
    """Label a log axis 0.2, 0.5, 1, 2 instead of 2 x 10^-1 (read at a glance); minor
    ticks only at 2x and 5x of each decade, or their labels collide. An axis whose data
    spans less than a decade would show one or two labels that way: it gets about
    five evenly spaced labels instead. Call it after the data is drawn."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

    label = FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_formatter(label)
    axis.set_minor_formatter(label)
    low, high = sorted(axis.get_data_interval())
    if 0 < low and high < 10 * low:
        axis.set_major_locator(MaxNLocator(nbins=5))
        axis.set_minor_locator(NullLocator())
    else:
        axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
