"""Every figure the book draws, in one style: titled, labelled with units, colour-blind safe.

Each function takes plain tensors, lists and dicts (training histories may be ``History``
objects or dicts with the same keys), draws inside :func:`style` so the caller's matplotlib
settings are left as they were, and returns the :class:`~matplotlib.figure.Figure`.
Figures are built without pyplot: a notebook shows each one once (as the cell's value), and
nothing piles up in pyplot's list of open figures. Functions that draw on one axis accept
``ax=`` to draw into a figure of your own.

Error rates and accuracies are fractions in [0, 1], as ``History`` stores them; they are
drawn in percent.

Arguments are checked only where a mistake would draw a wrong figure without a word: a
percentage where a fraction belongs, a value <= 0 on a log axis (matplotlib leaves it out), a
reference or spread under a name that is not drawn, labels or augmented images that do not
match the images one for one, a block kind that does not exist. Other mistakes are left to
the clear errors of torch, numpy and matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import matplotlib as mpl
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch
from matplotlib.path import Path
from matplotlib.ticker import FuncFormatter, LogFormatter, NullFormatter
from torch import Tensor

from .data import per_class_indices
from .measure import confusion_counts

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


def _new_figure(figsize: tuple[float, float]) -> Figure:
    return Figure(figsize=figsize, layout="constrained")


def _figure_and_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is None:
        fig = _new_figure(figsize)
        return fig, fig.add_subplot()
    fig = ax.figure
    while not isinstance(fig, Figure):  # a SubFigure: walk up to the figure that is drawn
        fig = fig.figure
    return fig, ax


def _finish(fig: Figure) -> Figure:
    # Ticks are created lazily, possibly after `style()` has ended: pin their size now.
    for ax in fig.axes:
        ax.tick_params(labelsize=SMALL_SIZE + 1)
    return fig


class _PlainLogFormatter(LogFormatter):
    """Tick labels 0.01, 0.5, 2 rather than 10⁻², 5×10⁻¹; LogFormatter decides which to show."""

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        return f"{x:g}"


def _log_y(ax: Axes) -> None:
    """Log y axis with plain-number labels; minor ticks labelled only within about a decade."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_PlainLogFormatter())
    minor = _PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1.2, 0.5))
    ax.yaxis.set_minor_formatter(minor)


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _numbers(values: Any) -> np.ndarray:
    """A float numpy array from a tensor, an array or a list (``None`` for missing → NaN)."""
    if isinstance(values, Tensor):
        values = values.detach().cpu().float().numpy()
    elif not isinstance(values, np.ndarray):
        values = [math.nan if v is None else v for v in values]
    return np.asarray(values, dtype=float)


def _percent(values: Any, name: str) -> np.ndarray:
    """Fractions in [0, 1] (NaN for missing) in percent; a percentage given is an error."""
    out = _numbers(values)
    bad = out[np.isfinite(out) & ((out < 0) | (out > 1))]
    if bad.size:
        raise ValueError(
            f"{name} must be fractions in [0, 1], got {bad[0]:g}; divide percentages by 100"
        )
    return 100 * out


def _positive(values: np.ndarray, name: str) -> np.ndarray:
    """Values for a log axis, which would leave out a value <= 0 without a word."""
    if (values <= 0).any():
        raise ValueError(f"{name} has a value <= 0, which a log axis cannot draw: {values}")
    return values


def _drawn(extra: Mapping[str, Any] | None, name: str, names: Any, names_name: str) -> None:
    """Each name of `extra` (references, spreads) must be drawn, not silently left out."""
    unknown = sorted(set(extra or {}) - set(names))
    if unknown:
        raise ValueError(f"{name} has names {unknown} that are not in {names_name} {list(names)}")


def _error_columns(history: History, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(epoch, train error %, test error %) of a ``History`` or a dict with those keys."""

    def column(key: str) -> Any:
        return history[key] if isinstance(history, Mapping) else getattr(history, key)

    train = _percent(column("train_error"), f"{name}.train_error")
    return _numbers(column("epoch")), train, _percent(column("test_error"), f"{name}.test_error")


def _as_images(images: Any, mean: Any = None, std: Any = None) -> np.ndarray:
    """[N, C, H, W] uint8 (0..255) or float (0..1) → [N, H, W, C] floats in [0, 1]."""
    x = images if isinstance(images, Tensor) else torch.as_tensor(np.asarray(images))
    x = x.detach().cpu()
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    if mean is not None:  # undo a normalisation
        x = x * torch.as_tensor(std, dtype=torch.float).view(1, -1, 1, 1)
        x = x + torch.as_tensor(mean, dtype=torch.float).view(1, -1, 1, 1)
    return x.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def _class_name(label: int, classes: Sequence[str] | None) -> str:
    return classes[label] if classes is not None else str(label)


def _tiles(
    pictures: Sequence[np.ndarray | None],
    ncols: int,
    *,
    titles: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    cmap: str = "gray",
    inches: float = 0.95,
) -> Figure:
    """Pictures in a grid on one axis (one axis per picture is ~40× slower to build).

    Each picture is [H, W, 3] or [H, W, 1] in [0, 1]; one channel is drawn with `cmap`.
    ``None`` leaves its cell empty. Tile k is ``fig.axes[0].images[k]`` (empties skipped).
    """
    nrows = math.ceil(len(pictures) / ncols)
    first = next(p for p in pictures if p is not None)
    aspect = first.shape[1] / first.shape[0]  # every tile is 1 unit high
    gap_x, gap_y = 0.08, 0.32 if titles else 0.08
    width = ncols * (aspect + gap_x) - gap_x
    height = nrows * (1 + gap_y) - gap_y
    # Row labels sit left of the tiles inside the axis, which the layout engine cannot see
    # outside it: reserve their width, ~0.085 inch per character at 10 pt.
    longest = max(
        (len(line) for label in row_labels or [] for line in label.split("\n")), default=0
    )
    label_width = (0.085 * longest + 0.15) / inches if row_labels else 0.0
    fig_width = max(4.0, inches * (width + label_width) + 0.2)  # room for the title too
    fig = _new_figure((fig_width, inches * (height + 0.3) + 0.45))
    ax = fig.add_subplot()
    sharp = {"interpolation": "nearest"}  # the rc default applies at draw time, after style()
    for k, picture in enumerate(pictures):
        if picture is None:
            continue
        r, c = divmod(k, ncols)
        left, top = c * (aspect + gap_x), -r * (1 + gap_y)
        extent = (left, left + aspect, top - 1, top)
        if picture.shape[-1] == 1:
            ax.imshow(picture[..., 0], cmap=cmap, vmin=0, vmax=1, extent=extent, **sharp)
        else:
            ax.imshow(picture, extent=extent, **sharp)
        if titles is not None:
            ax.text(left + aspect / 2, top + 0.04, titles[k], ha="center", va="bottom",
                    fontsize=SMALL_SIZE)  # fmt: skip
    for r, label in enumerate(row_labels or []):
        ax.text(-0.1, -r * (1 + gap_y) - 0.5, label, ha="right", va="center")
    ax.set_xlim(-label_width - 0.01, width + 0.01)
    ax.set_ylim(-height - 0.01, (0.3 if titles else 0) + 0.01)
    ax.set_aspect("equal")
    ax.set_axis_off()
    return fig


# --------------------------------------------------------------------------- training


def training_curves(
    runs: Mapping[str, History | Sequence[History]],
    *,
    title: str = "Training curves",
    ax: Axes | None = None,
    ylim: tuple[float, float] | None = None,
    held_out: str = "test",
) -> Figure:
    """Train (thin, dashed) and test (bold) error per epoch, one colour per run, in the style of
    He et al. (2016a), Fig. 6, as `paper_curves`.

    Args:
        runs: name → ``History`` (or dict with ``epoch``, ``train_error``, ``test_error``),
            or name → list of histories from several seeds: drawn as their mean with a
            min–max band.
        title: axis title.
        ax: axis to draw on; a new figure when ``None``.
        ylim: y range in percent, e.g. ``(0, 20)`` to zoom in as the paper does.
        held_out: what the bold curve (the history's ``test_error``) was measured on, for
            the legend: "validation" when `fit` was given a validation split.
    """
    with style():
        fig, ax = _figure_and_axes(ax, (6.4, 4.2))
        for i, (name, run) in enumerate(runs.items()):
            seeds = run if isinstance(run, (list, tuple)) else [run]
            columns = [_error_columns(h, f"runs[{name!r}]") for h in seeds]
            epoch = columns[0][0]
            lines = (("train", "--", 1.0), (held_out, "-", 2.4))  # the paper's Fig. 6
            for k, (part, dashes, width) in enumerate(lines, start=1):
                errors = np.stack([c[k] for c in columns])  # (seeds, epochs), in %
                ax.plot(epoch, errors.mean(0), dashes, lw=width, color=_color(i),
                        label=f"{name} {part}")  # fmt: skip
                if len(seeds) > 1:
                    ax.fill_between(
                        epoch, errors.min(0), errors.max(0), color=_color(i), alpha=0.18, lw=0
                    )
        runs_legend = [Line2D([], [], color=_color(i), label=n) for i, n in enumerate(runs)]
        kinds = [Line2D([], [], color="0.3", ls="--", lw=1.0, label="train"),
                 Line2D([], [], color="0.3", ls="-", lw=2.4, label=held_out)]  # fmt: skip
        ax.legend(handles=runs_legend + kinds, ncols=2 if len(runs) > 3 else 1)
        ax.set_xlabel("epoch")
        ax.set_ylabel("error (%)")
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.set_title(title)
        return _finish(fig)


def paper_curves(
    panels: Mapping[str, Mapping[str, History]],
    *,
    title: str,
    lr_drops: Sequence[float] = (),
    ylim: tuple[float, float] = (0, 40),
) -> Figure:
    """The paper's Fig. 6 style: thin dashed training error, bold test error, one panel per group.

    Args:
        panels: panel title → (network name → History), e.g. {"plain": {...}, "ResNet": {...}}.
        title: the figure's title (say where and how the runs were made).
        lr_drops: epochs at which the learning rate was divided, drawn as dotted lines.
        ylim: y range in percent (the paper zooms to 0–20).
    """
    with style():
        fig = _new_figure((5.2 * len(panels), 4.2))
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
        for ax, (panel, runs) in zip(axes, panels.items()):
            for i, (name, history) in enumerate(runs.items()):
                epoch, train, test = _error_columns(history, f"panels[{panel!r}][{name!r}]")
                ax.plot(epoch, train, "--", lw=1.0, color=_color(i))
                ax.plot(epoch, test, "-", lw=2.4, color=_color(i), label=name)
            for drop in lr_drops:
                ax.axvline(drop, color="0.5", ls=":", lw=1.0)
            kinds = [Line2D([], [], color="0.3", ls="--", lw=1.0, label="train"),
                     Line2D([], [], color="0.3", ls="-", lw=2.4, label="test")]  # fmt: skip
            ax.legend(handles=ax.get_legend_handles_labels()[0] + kinds)
            ax.set_title(panel)
            ax.set_xlabel("epoch")
            ax.set_ylim(*ylim)
        axes[0].set_ylabel("error (%)")
        fig.suptitle(title)
        return _finish(fig)


def lr_schedule(
    schedules: Mapping[str, Sequence[float]],
    *,
    steps_per_epoch: int | None = None,
    log: bool = False,
    title: str = "Learning-rate schedules",
    ax: Axes | None = None,
) -> Figure:
    """Learning rate against iteration, or against epoch when ``steps_per_epoch`` is given.

    Args:
        schedules: name → learning rate at each optimiser step (or each epoch, with
            ``steps_per_epoch=1``).
        steps_per_epoch: divide the step index by this to put epochs on the x axis.
        log: logarithmic learning-rate axis (step decays become equal steps).
    """
    with style():
        fig, ax = _figure_and_axes(ax, (6.4, 3.6))
        for i, (name, rates) in enumerate(schedules.items()):
            lr = _numbers(rates)
            if log:
                _positive(lr, f"schedules[{name!r}]")
            x = np.arange(len(lr), dtype=float) / (steps_per_epoch or 1)
            ax.plot(x, lr, color=_color(i), label=name, drawstyle="steps-post")
        ax.set_xlabel("iteration" if steps_per_epoch is None else "epoch")
        ax.set_ylabel("learning rate")
        if log:
            _log_y(ax)
        ax.legend()
        ax.set_title(title)
        return _finish(fig)


# --------------------------------------------------------------------------- images


def image_grid(
    images: Tensor,
    labels: Tensor | Sequence[int] | None = None,
    classes: Sequence[str] | None = None,
    *,
    ncols: int = 10,
    per_class: int | None = None,
    title: str = "Images",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Figure:
    """A grid of images, each titled with its class; or one row per class with ``per_class``.

    Args:
        images: [N, C, H, W] with C = 1 or 3; uint8 in 0..255 or float in 0..1.
        labels: [N] class indices; names each image (or picks rows with ``per_class``).
        classes: class names, indexed by label.
        ncols: images per row (with ``per_class``, the row length is ``per_class``).
        per_class: show the first ``per_class`` images of every class, one row per class.
        mean, std: per-channel statistics to undo a normalisation before drawing.
    """
    pictures = _as_images(images, mean, std)
    if labels is not None:
        labels = torch.as_tensor(labels).flatten()
        if len(labels) != len(pictures):  # the titles would name other images
            raise ValueError(f"labels has {len(labels)} values but images has {len(pictures)}")
    titles = row_labels = None
    if per_class is not None:
        num_classes = len(classes) if classes is not None else int(labels.max()) + 1
        order = per_class_indices(labels, per_class, num_classes).tolist()
        ncols = per_class
        row_labels = [_class_name(c, classes) for c in range(num_classes)]
    else:
        order = list(range(len(pictures)))
        ncols = min(ncols, len(order))
        if labels is not None:
            titles = [_class_name(int(labels[i]), classes) for i in order]
    with style():
        fig = _tiles([pictures[i] for i in order], ncols, titles=titles, row_labels=row_labels)
        height, width = pictures.shape[1:3]
        fig.suptitle(f"{title} ({width}×{height} pixels)")
        return fig


def augmentation(
    before: Tensor,
    after: Tensor | Sequence[Tensor],
    *,
    title: str = "Data augmentation",
    row_labels: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Figure:
    """Original images in the top row, their augmented versions below, rows labelled.

    Args:
        before: [N, C, H, W] originals (uint8 or float in 0..1).
        after: [N, C, H, W] augmented images, or a list of such tensors (several draws).
        row_labels: one name per row; default "original", "augmented", "augmented 2", …
        mean, std: per-channel statistics to undo a normalisation (applied to ``after`` only;
            ``before`` is taken as raw images).
    """
    draws = [after] if isinstance(after, (Tensor, np.ndarray)) else list(after)
    rows = [_as_images(before)] + [_as_images(draw, mean, std) for draw in draws]
    for j, row in enumerate(rows[1:]):
        if row.shape != rows[0].shape:  # the rows would wrap, images under others' originals
            name = "after" if len(draws) == 1 else f"after[{j}]"
            raise ValueError(f"{name} has shape {row.shape} (N, H, W, C), before {rows[0].shape}")
    if row_labels is None:
        draw_labels = [f"augmented {j + 1}" for j in range(len(draws))]
        row_labels = ["original", *(draw_labels if len(draws) > 1 else ["augmented"])]
    with style():
        pictures = [picture for row in rows for picture in row]
        fig = _tiles(pictures, len(rows[0]), row_labels=row_labels)
        height, width = rows[0].shape[1:3]
        fig.suptitle(f"{title} ({width}×{height} pixels)")
        return fig


def _normalize_each(maps: Tensor) -> Tensor:
    """Min–max scale each slice along dim 0 to [0, 1]; a constant slice becomes 0.5."""
    flat = maps.reshape(len(maps), -1)
    shape = (-1,) + (1,) * (maps.dim() - 1)
    low, high = flat.min(1).values.view(shape), flat.max(1).values.view(shape)
    span = high - low
    scaled = (maps - low) / span.clamp_min(1e-12)
    return torch.where(span > 0, scaled, torch.full_like(maps, 0.5))


def feature_maps(
    maps: Mapping[str, Tensor],
    *,
    channels: int = 8,
    title: str = "Feature maps",
    cmap: str = "viridis",
) -> Figure:
    """The first ``channels`` channels of each activation, one row per stage, with its shape.

    Args:
        maps: stage name → activation [C, H, W] (or [1, C, H, W]), e.g. after the stem and
            after each stage, for one input image. Rows of lower resolution show bigger pixels.
        channels: channels drawn per row; each map is scaled to its own range.
    """
    rows = {}
    for name, activation in maps.items():
        a = torch.as_tensor(activation).detach().cpu().float()
        rows[name] = a.squeeze(0) if a.dim() == 4 else a  # [1, C, H, W] → [C, H, W]
    ncols = min(channels, max(len(a) for a in rows.values()))
    pictures, row_labels = [], []
    for name, a in rows.items():
        scaled = list(_normalize_each(a[:ncols]).unsqueeze(-1).numpy())  # (H, W, 1) each
        pictures += scaled + [None] * (ncols - len(scaled))
        row_labels.append(f"{name}\n" + "×".join(str(s) for s in a.shape))
    with style():
        fig = _tiles(pictures, ncols, row_labels=row_labels, cmap=cmap)
        fig.suptitle(f"{title} (first {ncols} channels; C×H×W)")
        return fig


# --------------------------------------------------------------------------- measurements


def _stage_starts(block_names: Sequence[str]) -> list[int]:
    """1-based positions where the stage prefix changes: "layer2.0" after "layer1.2" → 4."""
    stages = [name.split(".")[0] for name in block_names]
    return [k + 1 for k in range(1, len(stages)) if stages[k] != stages[k - 1]]


def gradient_norms(
    norms: Mapping[str, Sequence[float] | Sequence[tuple[str, float]]],
    *,
    ylabel: str = "gradient norm",
    log: bool = True,
    title: str = "Gradient norm through depth",
    ax: Axes | None = None,
) -> Figure:
    """Gradient norm of each block, from input (1) to output, one line per network.

    Args:
        norms: network name → one norm per block, ordered from the input to the output;
            either numbers or ``(block name, norm)`` pairs as ``measure.gradient_norms``
            returns. With names, dotted lines mark where a stage (``layerK``) begins.
        ylabel: y axis label; say the norm used, e.g. "‖∂L/∂W‖₂ per block".
        log: logarithmic y axis (vanishing gradients span decades).
    """
    with style():
        fig, ax = _figure_and_axes(ax, (6.4, 3.8))
        boundaries: set[int] = set()
        for i, (name, values) in enumerate(norms.items()):
            values = list(values)
            if values and isinstance(values[0], (tuple, list)):
                boundaries.update(_stage_starts([str(block) for block, _ in values]))
                values = [norm for _, norm in values]
            y = _numbers(values)
            if log:
                _positive(y, f"norms[{name!r}]")
            ax.plot(np.arange(1, len(y) + 1), y, "o-", color=_color(i), label=name, ms=3.5)
        for start in sorted(boundaries):
            ax.axvline(start - 0.5, color="0.6", ls=":", lw=1, gid="stage start")
        ax.set_xlabel("block index (input → output)")
        ax.set_ylabel(ylabel)
        if log:
            _log_y(ax)
        ax.legend()
        ax.set_title(title)
        return _finish(fig)


def layer_responses(
    stds: Mapping[str, Sequence[tuple[str, float]]],
    *,
    title: str = "Standard deviation of layer responses",
) -> Figure:
    """He et al. 2016a, Fig. 7: the std of each 3×3 layer's response, in layer order and sorted.

    Args:
        stds: network name → ``(layer name, std)`` per layer, input to output, as
            ``measure.response_stds`` returns. The top panel draws them in layer order (dotted
            lines where a stage begins), the bottom panel sorted from largest to smallest.
    """
    with style():
        fig = _new_figure((7.2, 6.0))
        by_layer, by_size = fig.subplots(2, 1)
        boundaries: set[int] = set()
        for i, (name, values) in enumerate(stds.items()):
            values = list(values)
            layers = [str(layer) for layer, _ in values]
            y = _numbers([std for _, std in values])
            boundaries.update(_stage_starts(layers))
            x = np.arange(1, len(y) + 1)
            look = {"color": _color(i), "marker": "osD^vP"[i % 6], "ms": 3.5, "lw": 1.2}
            by_layer.plot(x, y, label=name, **look)
            by_size.plot(x, np.sort(y)[::-1], label=name, **look)
        for start in sorted(boundaries):
            by_layer.axvline(start - 0.5, color="0.6", ls=":", lw=1)
        by_layer.set_xlabel("layer index (original order, input → output)")
        by_size.set_xlabel("layer index (sorted by magnitude)")
        for ax in (by_layer, by_size):
            ax.set_ylabel("std of response")
            ax.set_ylim(bottom=0)
        by_layer.legend()
        fig.suptitle(title)
        return _finish(fig)


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
    """One bar per name with its value written on top; optional published values as markers.

    Args:
        values: name → value, in the unit that ``ylabel`` states.
        ylabel: y axis label with its unit, e.g. "parameters (millions)".
        reference: name → published value (same unit), drawn as a black marker on the bar.
        fmt: format of the number written above each bar.
    """
    _drawn(reference, "reference", values, "values")
    with style():
        fig, ax = _figure_and_axes(ax, (max(3.2, 0.9 * len(values) + 1.5), 3.6))
        _draw_bars(ax, values, reference, reference_label, fmt, _color(0))
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        return _finish(fig)


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

    Args:
        names: model names.
        params: parameter count of each model (plain counts, e.g. 11_689_512).
        macs: multiply-adds of one forward pass (plain counts, e.g. 1.814e9).
        reference_params, reference_macs: name → published count, plain counts too (the
            paper's Table 1 gives "FLOPs" 1.8×10⁹ for ResNet-18: pass ``1.8e9``).
    """
    panels = [
        ("parameters (millions)", params, reference_params, "reference_params", 1e6, "{:.1f}"),
        ("multiply-adds (GMAC)", macs, reference_macs, "reference_macs", 1e9, "{:.2f}"),
    ]
    with style():
        fig = _new_figure((max(6.4, 1.4 * len(names) + 2.5), 3.6))
        axes = fig.subplots(1, 2)
        for ax, (label, counts, ref, ref_name, unit, fmt), color in zip(axes, panels, PALETTE):
            _drawn(ref, ref_name, names, "names")
            values = {n: float(c) / unit for n, c in zip(names, counts, strict=True)}
            scaled_ref = {n: float(v) / unit for n, v in (ref or {}).items()}
            _draw_bars(ax, values, scaled_ref, reference_label, fmt, color)
            ax.set_ylabel(label)
            ax.set_title(label.split(" (")[0].capitalize())
        fig.suptitle(title)
        return _finish(fig)


def confusion_matrix(
    targets: Tensor | Sequence[int],
    predictions: Tensor | Sequence[int],
    classes: Sequence[str],
    *,
    normalize: bool = True,
    title: str = "Confusion matrix",
    ax: Axes | None = None,
    cmap: str = "Blues",
) -> Figure:
    """Counts of (true, predicted) classes, each cell written out; rows in % when normalised.

    Args:
        targets, predictions: [N] class indices.
        classes: class names; their number is the matrix size.
        normalize: show each row as % of that true class (the diagonal is per-class recall).
    """
    counts = confusion_counts(targets, predictions, len(classes)).double()
    total = counts.sum()
    accuracy = float(counts.trace() / total) if total else math.nan
    if normalize:
        shown, unit = 100 * counts / counts.sum(1, keepdim=True).clamp_min(1), "% of true class"
    else:
        shown, unit = counts, "images"
    shown = shown.numpy()
    k = len(classes)
    top = 100 if normalize else shown.max()
    with style():
        fig, ax = _figure_and_axes(ax, (0.5 * k + 2.6, 0.5 * k + 1.6))
        image = ax.imshow(shown, cmap=cmap, vmin=0, vmax=top, interpolation="nearest")
        ax.grid(False)
        threshold = 0.6 * max(top, 1)
        size = SMALL_SIZE if k <= 12 else SMALL_SIZE - 2
        for (r, c), v in np.ndenumerate(shown):
            color = "white" if v > threshold else "black"
            ax.text(c, r, f"{v:.0f}", ha="center", va="center", color=color, fontsize=size)
        ax.set_xticks(range(k), classes, rotation=45, ha="right")
        ax.set_yticks(range(k), classes)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        fig.colorbar(image, ax=ax, label=unit, shrink=0.85)
        ax.set_title(f"{title} (accuracy {100 * accuracy:.1f}%, {int(total)} images)")
        return _finish(fig)


def shape_trace(
    trace: Sequence[tuple[str, Sequence[int]]],
    *,
    title: str = "Shape through the network",
) -> Figure:
    """Channels (top) and spatial resolution (bottom) after each stage; x = stage name.

    Feature maps are joined by a line. A vector (the head's class scores, say) has no channels
    and no grid: it is drawn apart, as a hollow diamond labelled with its length, and its
    resolution is marked "no grid". Both y axes are logarithmic (base 2).

    Args:
        trace: (stage name, output shape) pairs from input to output, as
            ``measure.trace_shapes`` returns; shapes are (N, C, H, W) or (C, H, W) for feature
            maps, (N, F) or (F,) for vectors.
    """
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
        fig = _new_figure((max(5.5, 0.9 * len(names) + 1.5), 5.0))
        top, bottom = fig.subplots(2, 1, sharex=True)
        maps = [i for i, w in enumerate(widths) if w is not None]
        vectors = [i for i, w in enumerate(widths) if w is None]
        map_channels = [channels[i] for i in maps]
        top.plot(x[maps], map_channels, "o-", color=_color(0), label="feature map: channels")
        if vectors:  # not channels of a map: no line joins them to the maps
            vector_lengths = [channels[i] for i in vectors]
            top.plot(x[vectors], vector_lengths, "D", ls="none", mfc="white", mec="black",
                     mew=1.5, ms=7, label="vector (no grid): length")  # fmt: skip
            top.legend(loc="lower right")
        bottom.plot(x, heights, "s-", color=_color(1))
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
        return _finish(fig)


# --------------------------------------------------------------------------- results


def error_vs_depth(
    depths: Sequence[int],
    errors: Mapping[str, Sequence[float]],
    *,
    reference: Mapping[str, Sequence[float]] | None = None,
    reference_label: str = "He et al. 2016a",
    title: str = "Test error against depth",
    ylabel: str = "test error (%)",
    ax: Axes | None = None,
    spread: Mapping[str, Sequence[float]] | None = None,
) -> Figure:
    """Error (%) against number of layers, one line per family (e.g. plain vs residual).

    Args:
        depths: number of weighted layers, e.g. ``[20, 32, 44, 56]``.
        errors: name → error fraction in [0, 1] at each depth (NaN where not run).
        reference: name → published error fractions at the same depths; dotted, open
            markers, in the colour of the series with the same name.
        spread: name (of `errors`) → uncertainty (a fraction) at each depth, such as a
            sampling error or a standard deviation over seeds; drawn as ± error bars.
    """
    _drawn(spread, "spread", errors, "errors")
    d = _numbers(depths)
    colors = {name: _color(i) for i, name in enumerate(errors)}
    with style():
        fig, ax = _figure_and_axes(ax, (5.6, 3.8))
        for name, values in errors.items():
            y = _percent(values, f"errors[{name!r}]")
            ax.plot(d, y, "o-", color=colors[name], label=name)
            if spread and name in spread:
                e = _percent(spread[name], f"spread[{name!r}]")
                ax.errorbar(d, y, yerr=e, fmt="none", ecolor=colors[name], capsize=3)
        for i, (name, values) in enumerate((reference or {}).items()):
            y = _percent(values, f"reference[{name!r}]")
            color = colors.get(name, _color(len(errors) + i))
            ax.plot(d, y, "o:", color=color, mfc="white", label=f"{name} ({reference_label})")
        ax.set_xticks(d, [f"{v:g}" for v in d])
        ax.set_xlabel("depth (weighted layers)")
        ax.set_ylabel(ylabel)
        ax.legend()
        ax.set_title(title)
        return _finish(fig)


def accuracy_vs_labels(
    labels_per_class: Sequence[int],
    results: Mapping[str, Sequence[float]],
    *,
    spread: Mapping[str, Sequence[float]] | None = None,
    chance: float | None = None,
    title: str = "Accuracy against labelled examples",
    ylabel: str = "test accuracy (%)",
    ylim: tuple[float, float] = (0, 100),
    ax: Axes | None = None,
) -> Figure:
    """Accuracy (%) against labelled images per class (log x): transfer vs from scratch.

    Args:
        labels_per_class: training images per class, e.g. ``[10, 100, 1000]``.
        results: method name → accuracy fraction in [0, 1] at each size.
        spread: method name → standard deviation (fraction) across seeds; drawn as error bars.
        chance: the accuracy of guessing (a fraction), drawn as a dashed line.
        ylim: y range in percent; the whole range by default, so that gaps are not magnified.
    """
    x = _positive(_numbers(labels_per_class), "labels_per_class")
    _drawn(spread, "spread", results, "results")
    with style():
        fig, ax = _figure_and_axes(ax, (6.0, 4.2))
        for i, (name, values) in enumerate(results.items()):
            y = _percent(values, f"results[{name!r}]")
            ax.plot(x, y, "o-", color=_color(i), label=name)
            if spread and name in spread:
                s = _percent(spread[name], f"spread[{name!r}]")
                ax.errorbar(x, y, yerr=s, fmt="none", ecolor=_color(i), capsize=4)
        if chance is not None:
            ax.axhline(100 * chance, color="0.4", ls="--", lw=1.0, label="chance")
        ax.set_xscale("log")
        ax.set_xticks(x, [f"{v:g}" for v in x])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("labelled training images per class")
        ax.set_ylabel(ylabel)
        ax.set_ylim(*ylim)
        ax.legend()
        ax.set_title(title)
        return _finish(fig)


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
            color=_color(1), fontstyle="italic")  # fmt: skip
    return centre - r


def residual_block_diagram(
    kind: Literal["basic", "bottleneck", "plain"] = "basic",
    *,
    channels: int = 64,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """The building block drawn as in He et al. 2016a, Fig. 2 (basic) and Fig. 5 (bottleneck).

    Weight layers are boxes, ReLUs are written on the arrows, and the identity shortcut is an
    arc from the input to the ⊕ that adds x to F(x). ``kind="plain"`` draws the same layers
    without the shortcut: they must learn H(x) directly.

    Args:
        kind: "basic" (two 3×3), "bottleneck" (1×1, 3×3, 1×1) or "plain" (basic, no shortcut).
        channels: width of the 3×3 layers, written in the boxes.
        title: defaults to the kind of block.
        ax: axis to draw on; a new figure, sized to the drawing, when ``None``.
    """
    if kind not in TITLES:  # else an unknown kind would be drawn as a basic block
        raise ValueError(f"kind must be 'basic', 'bottleneck' or 'plain', got {kind!r}")
    layers, width = _layers(kind, channels)
    residual = kind != "plain"
    with style():
        own_figure = ax is None
        fig, ax = _figure_and_axes(ax, (4.0, 6.0))
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
        return _finish(fig)
