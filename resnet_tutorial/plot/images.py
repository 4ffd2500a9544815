"""Figures of images: a grid of images, their augmentations, feature maps, and the confusion
matrix of a classifier's predictions."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from ..data import per_class_indices
from ..measure import confusion_counts
from ._style import SMALL_SIZE, figure_and_axes, finish_figure, new_figure, style


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
    fig = new_figure((fig_width, inches * (height + 0.3) + 0.45))
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
    """A grid of images [N, C, H, W] (uint8, or float in 0..1), each titled with its class; or
    the first ``per_class`` images of every class, one row per class. ``mean`` and ``std`` undo
    a normalisation before drawing."""
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

    ``after`` is one batch like ``before`` or a list of them (several draws); ``mean`` and
    ``std`` undo a normalisation of ``after`` only (``before`` is taken as raw images).
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
    """The first ``channels`` channels of each activation (stage name → [C, H, W] or
    [1, C, H, W]), one row per stage, with its shape; each map scaled to its own range."""
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


# --------------------------------------------------------------------------- predictions


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
    """Counts of (true, predicted) classes, each cell written out; with ``normalize`` each row
    in % of its true class (the diagonal is per-class recall)."""
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
        fig, ax = figure_and_axes(ax, (0.5 * k + 2.6, 0.5 * k + 1.6))
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
        return finish_figure(fig)
