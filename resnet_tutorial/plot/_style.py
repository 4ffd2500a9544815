"""The book's figure style (`PALETTE`, `STYLE`, `style()`) and what every figure module shares."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter
from torch import Tensor

# Okabe & Ito (2008), "Color Universal Design": distinguishable under the common colour-vision
# deficiencies, and still ordered sensibly when printed in grey.
PALETTE: tuple[str, ...] = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#000000",  # black
    "#F0E442",  # yellow (last: weak on white)
)

TEXT_SIZE = 10
SMALL_SIZE = 8

STYLE: dict[str, Any] = {
    "axes.prop_cycle": mpl.cycler(color=PALETTE),
    "font.size": TEXT_SIZE,
    "axes.titlesize": TEXT_SIZE + 1,
    "axes.labelsize": TEXT_SIZE,
    "figure.titlesize": TEXT_SIZE + 2,
    "legend.fontsize": SMALL_SIZE + 1,
    "xtick.labelsize": SMALL_SIZE + 1,
    "ytick.labelsize": SMALL_SIZE + 1,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.8,
    "lines.markersize": 5,
    "image.interpolation": "nearest",
    "image.cmap": "viridis",
    "figure.dpi": 100,
    "savefig.dpi": 150,
}

History = Any  # duck-typed: a train.History or a dict with the same keys


@contextmanager
def style() -> Iterator[dict[str, Any]]:
    """Apply the book's matplotlib settings inside a ``with`` block, restoring them after."""
    with mpl.rc_context(STYLE):
        yield STYLE


# --------------------------------------------------------------------------- helpers


def new_figure(figsize: tuple[float, float]) -> Figure:
    return Figure(figsize=figsize, layout="constrained")


def figure_and_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is None:
        fig = new_figure(figsize)
        return fig, fig.add_subplot()
    fig = ax.figure
    while not isinstance(fig, Figure):  # a SubFigure: walk up to the figure that is drawn
        fig = fig.figure
    return fig, ax


def finish_figure(fig: Figure) -> Figure:
    # Ticks are created lazily, possibly after `style()` has ended: pin their size now.
    for ax in fig.axes:
        ax.tick_params(labelsize=SMALL_SIZE + 1)
    return fig


class _PlainLogFormatter(LogFormatter):
    """Tick labels 0.01, 0.5, 2 rather than 10⁻², 5×10⁻¹; LogFormatter decides which to show."""

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        return f"{x:g}"


def log_y(ax: Axes) -> None:
    """Log y axis with plain-number labels; minor ticks labelled only within about a decade."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_PlainLogFormatter())
    minor = _PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1.2, 0.5))
    ax.yaxis.set_minor_formatter(minor)


def palette_color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def as_numbers(values: Any) -> np.ndarray:
    """A float numpy array from a tensor, an array or a list (``None`` for missing → NaN)."""
    if isinstance(values, Tensor):
        values = values.detach().cpu().float().numpy()
    elif not isinstance(values, np.ndarray):
        values = [math.nan if v is None else v for v in values]
    return np.asarray(values, dtype=float)


def as_percent(values: Any, name: str) -> np.ndarray:
    """Fractions in [0, 1] (NaN for missing) in percent; a percentage given is an error."""
    out = as_numbers(values)
    bad = out[np.isfinite(out) & ((out < 0) | (out > 1))]
    if bad.size:
        raise ValueError(
            f"{name} must be fractions in [0, 1], got {bad[0]:g}; divide percentages by 100"
        )
    return 100 * out


def positive(values: np.ndarray, name: str) -> np.ndarray:
    """Values for a log axis, which would leave out a value <= 0 without a word."""
    if (values <= 0).any():
        raise ValueError(f"{name} has a value <= 0, which a log axis cannot draw: {values}")
    return values


def check_drawn(extra: Mapping[str, Any] | None, name: str, names: Any, names_name: str) -> None:
    """Each name of `extra` (references, spreads) must be drawn, not silently left out."""
    unknown = sorted(set(extra or {}) - set(names))
    if unknown:
        raise ValueError(f"{name} has names {unknown} that are not in {names_name} {list(names)}")
