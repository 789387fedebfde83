"""Where every picture of the report is drawn: a matplotlib figure without a display."""

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
