"""Figures of the architecture: costs as bars, the shape through the network, and the residual
block drawn as in the paper."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch
from matplotlib.path import Path
from matplotlib.ticker import FuncFormatter, NullFormatter

from ._style import (
    PALETTE,
    SMALL_SIZE,
    TEXT_SIZE,
    check_drawn,
    figure_and_axes,
    finish_figure,
    new_figure,
    palette_color,
    style,
)

# --------------------------------------------------------------------------- costs


def bars(
    values: Mapping[str, float],
    *,
    ylabel: str,
    title: str,
    reference: Mapping[str, float] | None = None,
    reference_label: str = "published",
    fmt: str = "{:.3g}",
    ax: Axes | None = None,
) -> Figure:
    """One bar per name with its value (in the unit ``ylabel`` states) written on top with
    ``fmt``; ``reference`` (name → published value) drawn as black markers."""
    check_drawn(reference, "reference", values, "values")
    with style():
        fig, ax = figure_and_axes(ax, (max(3.2, 0.9 * len(values) + 1.5), 3.6))
        _draw_bars(ax, values, reference, reference_label, fmt, palette_color(0))
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        return finish_figure(fig)


def _draw_bars(
    ax: Axes,
    values: Mapping[str, float],
    reference: Mapping[str, float] | None,
    reference_label: str,
    fmt: str,
    color: str,
) -> None:
    names = list(values)
    heights = [float(values[n]) for n in names]
    x = np.arange(len(names))
    drawn = ax.bar(x, heights, color=color, width=0.65)
    ax.bar_label(drawn, labels=[fmt.format(h) for h in heights], fontsize=SMALL_SIZE, padding=2)
    ax.set_xticks(
        x, names, rotation=30 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center"
    )
    ax.grid(axis="x", visible=False)
    ax.margins(y=0.15)
    if reference:
        marked = [i for i, n in enumerate(names) if n in reference]
        published = [float(reference[names[i]]) for i in marked]
        ax.plot(x[marked], published, "_", color="black", ms=20, mew=2.5, label=reference_label)
        ax.legend(loc="upper left")


def cost_bars(
    names: Sequence[str],
    params: Sequence[float],
    macs: Sequence[float],
    *,
    reference_params: Mapping[str, float] | None = None,
    reference_macs: Mapping[str, float] | None = None,
    reference_label: str = "He et al. 2016a, Table 1",
    title: str = "Model cost",
) -> Figure:
    """Parameters (millions) and multiply-adds (GMAC) side by side, with published markers.

    All counts are plain counts (11_689_512, 1.814e9), the published ones too (the paper's
    Table 1 gives "FLOPs" 1.8×10⁹ for ResNet-18: pass ``1.8e9``).
    """
    panels = [
        ("parameters (millions)", params, reference_params, "reference_params", 1e6, "{:.1f}"),
        ("multiply-adds (GMAC)", macs, reference_macs, "reference_macs", 1e9, "{:.2f}"),
    ]
    with style():
        fig = new_figure((max(6.4, 1.4 * len(names) + 2.5), 3.6))
        axes = fig.subplots(1, 2)
        for ax, (label, counts, ref, ref_name, unit, fmt), color in zip(axes, panels, PALETTE):
            check_drawn(ref, ref_name, names, "names")
            values = {n: float(c) / unit for n, c in zip(names, counts, strict=True)}
            scaled_ref = {n: float(v) / unit for n, v in (ref or {}).items()}
            _draw_bars(ax, values, scaled_ref, reference_label, fmt, color)
            ax.set_ylabel(label)
            ax.set_title(label.split(" (")[0].capitalize())
        fig.suptitle(title)
        return finish_figure(fig)


# --------------------------------------------------------------------------- shapes


def shape_trace(
    trace: Sequence[tuple[str, Sequence[int]]],
    *,
    title: str = "Shape through the network",
) -> Figure:
    """Channels (top) and spatial resolution (bottom, both log 2) after each stage of a
    ``measure.trace_shapes`` trace. A vector (the head's scores) has no grid: it is drawn
    apart, as a hollow diamond labelled with its length."""
    names, channels, heights, widths = [], [], [], []
    for name, shape in trace:
        shape = [int(s) for s in shape]
        c, h, w = shape[-3:] if len(shape) >= 3 else (shape[-1], math.nan, None)
        names.append(str(name))
        channels.append(c)
        heights.append(h)
        widths.append(w)
    x = np.arange(len(names))
    above = dict(textcoords="offset points", xytext=(0, 6), ha="center", fontsize=SMALL_SIZE)
    with style():
        fig = new_figure((max(5.5, 0.9 * len(names) + 1.5), 5.0))
        top, bottom = fig.subplots(2, 1, sharex=True)
        maps = [i for i, w in enumerate(widths) if w is not None]
        vectors = [i for i, w in enumerate(widths) if w is None]
        map_channels = [channels[i] for i in maps]
        top.plot(x[maps], map_channels, "o-", color=palette_color(0), label="feature map: channels")
        if vectors:  # not channels of a map: no line joins them to the maps
            vector_lengths = [channels[i] for i in vectors]
            top.plot(x[vectors], vector_lengths, "D", ls="none", mfc="white", mec="black",
                     mew=1.5, ms=7, label="vector (no grid): length")  # fmt: skip
            top.legend(loc="lower right")
        bottom.plot(x, heights, "s-", color=palette_color(1))
        for xi, c, h, w in zip(x, channels, heights, widths, strict=True):
            top.annotate(f"{c}" if w is not None else f"{c} values", (xi, c), **above)
            if w is not None:
                bottom.annotate(f"{h:.0f}×{w}", (xi, h), **above)
            else:  # x in data units, y in axes units: near the bottom of the panel
                bottom.text(xi, 0.08, "no grid", transform=bottom.get_xaxis_transform(),
                            ha="center", fontsize=SMALL_SIZE, color="0.35")  # fmt: skip
        top.set_ylabel("channels")
        top.set_title("Channels")
        bottom.set_ylabel("height (pixels)")
        bottom.set_title("Spatial resolution")
        for ax in (top, bottom):
            ax.set_yscale("log", base=2)
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.margins(y=0.25)
        bottom.set_xticks(x, names, rotation=30 if len(names) > 6 else 0)
        bottom.set_xlabel("stage")
        fig.suptitle(title)
        return finish_figure(fig)


# --------------------------------------------------------------------------- diagram

BOX_WIDTH, BOX_HEIGHT, GAP = 2.6, 0.62, 0.55  # diagram units; the axis keeps aspect 1
PLUS_RADIUS = 0.2
INK = "0.15"
ARROW = {"arrowstyle": "-|>", "mutation_scale": 11, "lw": 1.3}
BOX = {"boxstyle": "round,pad=0.02,rounding_size=0.08", "facecolor": "#DCEAF5", "lw": 1.3}
TITLES = {
    "basic": "Residual block (basic)",
    "bottleneck": "Residual block (bottleneck)",
    "plain": "Plain block (no shortcut)",
}


def _layers(kind: str, channels: int) -> tuple[list[str], int]:
    """Weight layers of a block (text per box) and the width of its input, in channels."""
    if kind == "bottleneck":
        out = 4 * channels  # expansion 4 (Fig. 5, right)
        return [f"1×1 conv, {channels}", f"3×3 conv, {channels}", f"1×1 conv, {out}"], out
    return [f"3×3 conv, {channels}", f"3×3 conv, {channels}"], channels


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], relu: bool) -> None:
    """A downward arrow of the main path; `relu` writes the nonlinearity beside it."""
    ax.add_patch(FancyArrowPatch(start, end, color=INK, **ARROW))
    if relu:
        middle = (start[1] + end[1]) / 2
        ax.text(start[0] + 0.18, middle, "relu", ha="left", va="center", fontsize=SMALL_SIZE)


def _weight_layers(ax: Axes, layers: Sequence[str], y: float) -> float:
    """Boxes for the weight layers, from `y` down; returns the y below the last box."""
    top = y - GAP
    for i, layer in enumerate(layers):
        _arrow(ax, (0, y), (0, y - GAP), relu=i > 0)
        y -= GAP + BOX_HEIGHT
        corner = (-BOX_WIDTH / 2, y)
        ax.add_patch(FancyBboxPatch(corner, BOX_WIDTH, BOX_HEIGHT, edgecolor=PALETTE[0], **BOX,
                                    gid="weight layer"))  # fmt: skip
        ax.text(0, y + BOX_HEIGHT / 2, layer, ha="center", va="center", fontsize=TEXT_SIZE)
    bracket = -BOX_WIDTH / 2 - 0.25  # a bracket on the left names what the layers compute
    ax.plot([bracket + 0.1, bracket, bracket, bracket + 0.1], [top, top, y, y], color="0.35", lw=1)
    return y


def _addition(ax: Axes, y: float, split: float) -> float:
    """The ⊕ below `y`, fed by the identity arc that leaves the main path at `split`."""
    r = PLUS_RADIUS
    centre = y - GAP - r
    _arrow(ax, (0, y), (0, centre + r), relu=False)
    ax.add_patch(Circle((0, centre), r, facecolor="white", edgecolor=INK, lw=1.3, gid="addition"))
    ax.plot([-0.6 * r, 0.6 * r], [centre, centre], color=INK, lw=1.3)
    ax.plot([0, 0], [centre - 0.6 * r, centre + 0.6 * r], color=INK, lw=1.3)
    ax.text(-r - 0.15, centre - 0.05, "F(x) + x", ha="right", va="top", fontstyle="italic")
    side, corner = BOX_WIDTH / 2 + 0.55, 0.3  # right, down, back left: rounded corners
    arc = Path(
        [(0, split), (side - corner, split), (side, split), (side, split - corner),
         (side, centre + corner), (side, centre), (side - corner, centre), (r, centre)],
        [Path.MOVETO, Path.LINETO, Path.CURVE3, Path.CURVE3,
         Path.LINETO, Path.CURVE3, Path.CURVE3, Path.LINETO],
    )  # fmt: skip
    ax.add_patch(FancyArrowPatch(path=arc, color=PALETTE[1], gid="shortcut", **ARROW))
    ax.text(side + 0.12, (split + centre) / 2, "x\nidentity", ha="left", va="center",
            color=palette_color(1), fontstyle="italic")  # fmt: skip
    return centre - r


def residual_block_diagram(
    kind: Literal["basic", "bottleneck", "plain"] = "basic",
    *,
    channels: int = 64,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """The building block drawn as in He et al. 2016a, Fig. 2 (basic) and Fig. 5 (bottleneck).

    Weight layers are boxes (``channels`` wide), ReLUs are written on the arrows, and the
    identity is an arc to the ⊕ that adds x to F(x); ``kind="plain"`` draws no shortcut.
    """
    if kind not in TITLES:  # else an unknown kind would be drawn as a basic block
        raise ValueError(f"kind must be 'basic', 'bottleneck' or 'plain', got {kind!r}")
    layers, width = _layers(kind, channels)
    residual = kind != "plain"
    with style():
        own_figure = ax is None
        fig, ax = figure_and_axes(ax, (4.0, 6.0))
        ax.set_axis_off()
        ax.set_aspect("equal")
        ax.text(0, 0.25, "x", ha="center", va="center", fontstyle="italic")
        ax.text(0.3, 0.25, f"{width}-d", ha="left", va="center", fontsize=SMALL_SIZE, color="0.35")
        split = -0.15  # the shortcut leaves the main path here
        top = split - GAP
        y = _weight_layers(ax, layers, split)
        name = "F(x)" if residual else "H(x)"
        ax.text(-BOX_WIDTH / 2 - 0.37, (top + y) / 2, name, ha="right", va="center",
                fontstyle="italic")  # fmt: skip
        if residual:
            y = _addition(ax, y, split)
        _arrow(ax, (0, y), (0, y - GAP), relu=True)
        y -= GAP
        ax.text(0, y - 0.22, "output", ha="center", va="center", fontsize=SMALL_SIZE, color="0.35")
        left, right, bottom, top = -BOX_WIDTH / 2 - 1.35, BOX_WIDTH / 2 + 1.6, y - 0.45, 0.5
        ax.set_xlim(left, right)
        ax.set_ylim(bottom, top)
        if own_figure:  # fit the figure to the drawing, so aspect 1 leaves no empty band
            scale = 0.72  # inches per diagram unit
            fig.set_size_inches(scale * (right - left), scale * (top - bottom) + 0.4)
        ax.set_title(title or TITLES[kind])
        return finish_figure(fig)
