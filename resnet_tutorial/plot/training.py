"""Figures of training and its results: error per epoch, learning rates, error against depth
and against labelled examples, gradient norms and layer responses through depth."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, NullFormatter

from ._style import (
    SMALL_SIZE,
    History,
    as_numbers,
    as_percent,
    check_drawn,
    figure_and_axes,
    finish_figure,
    log_y,
    new_figure,
    palette_color,
    positive,
    style,
)

# --------------------------------------------------------------------------- training


def _error_columns(history: History, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(epoch, train error %, test error %) of a ``History`` or a dict with those keys."""

    def column(key: str) -> Any:
        return history[key] if isinstance(history, Mapping) else getattr(history, key)

    errors = (as_percent(column(k), f"{name}.{k}") for k in ("train_error", "test_error"))
    return (as_numbers(column("epoch")), *errors)


def training_curves(
    runs: Mapping[str, History | Sequence[History]],
    *,
    title: str = "Training curves",
    ax: Axes | None = None,
    ylim: tuple[float, float] | None = None,
    held_out: str = "test",
    band: str | None = None,
) -> Figure:
    """Train (thin, dashed) and test (bold) error per epoch, one colour per run, in the style of
    He et al. (2016a), Fig. 6.

    Args:
        runs: name → ``History``, or name → list of histories from several seeds: drawn as
            their mean, with a min–max band around the curve that `band` names.
        ylim: y range in percent, e.g. ``(0, 20)`` to zoom in as the paper does.
        held_out: what the bold curve was measured on, for the legend ("validation", say).
        band: which curve of several seeds gets the band: `held_out` (the default) or "train".
    """
    band = held_out if band is None else band
    if band not in ("train", held_out):
        raise ValueError(f"band must be 'train' or {held_out!r} (held_out), got {band!r}")
    with style():
        fig, ax = figure_and_axes(ax, (6.4, 4.2))
        for i, (name, run) in enumerate(runs.items()):
            seeds = run if isinstance(run, (list, tuple)) else [run]
            columns = [_error_columns(h, f"runs[{name!r}]") for h in seeds]
            epoch = columns[0][0]
            lines = (("train", "--", 1.0), (held_out, "-", 2.4))  # the paper's Fig. 6
            for k, (part, dashes, width) in enumerate(lines, start=1):
                errors = np.stack([c[k] for c in columns])  # (seeds, epochs), in %
                ax.plot(epoch, errors.mean(0), dashes, lw=width, color=palette_color(i),
                        label=f"{name} {part}")  # fmt: skip
                if len(seeds) > 1 and part == band:
                    ax.fill_between(epoch, errors.min(0), errors.max(0), color=palette_color(i),
                                    alpha=0.18, lw=0)  # fmt: skip
        runs_legend = [Line2D([], [], color=palette_color(i), label=n) for i, n in enumerate(runs)]
        kinds = [Line2D([], [], color="0.3", ls="--", lw=1.0, label="train"),
                 Line2D([], [], color="0.3", ls="-", lw=2.4, label=held_out)]  # fmt: skip
        ax.legend(handles=runs_legend + kinds, ncols=2 if len(runs) > 3 else 1)
        ax.set_xlabel("epoch")
        ax.set_ylabel("error (%)")
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.set_title(title)
        return finish_figure(fig)


def paper_curves(
    panels: Mapping[str, Mapping[str, History | Sequence[History]]],
    *,
    title: str,
    lr_drops: Sequence[float] = (),
    ylim: tuple[float, float] = (0, 40),
    reference: Mapping[str, float] | None = None,
) -> Figure:
    """The paper's Fig. 6 style: thin dashed training error, bold test error, one panel per group.

    Args:
        panels: panel title → (network name → History, or a list of them, one per seed).
            Several seeds are drawn as their mean, with a min–max band around the test error;
            the test curve joins the tested epochs (`TrainConfig.test_every`), each a dot.
        title: the figure's title (say where and how the runs were made).
        lr_drops: epochs at which the learning rate was divided, drawn as dotted lines.
        reference: label → a published error (a fraction), a black line in every panel.
    """
    levels = {label: float(as_percent([error], f"reference[{label!r}]")[0])
              for label, error in (reference or {}).items()}  # fmt: skip
    with style():
        fig = new_figure((5.2 * len(panels), 4.2))
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
        for ax, (panel, runs) in zip(axes, panels.items()):
            for i, (name, run) in enumerate(runs.items()):
                seeds = run if isinstance(run, (list, tuple)) else [run]
                columns = [_error_columns(h, f"panels[{panel!r}][{name!r}]") for h in seeds]
                epoch = columns[0][0]
                train, test = (np.stack([c[k] for c in columns]) for k in (1, 2))
                tested = np.isfinite(test).all(0)
                marker = "o" if not tested.all() else None
                ax.plot(epoch, train.mean(0), "--", lw=1.0, color=palette_color(i))
                ax.plot(epoch[tested], test[:, tested].mean(0), "-", lw=2.4, marker=marker,
                        ms=4, color=palette_color(i), label=name)  # fmt: skip
                if len(seeds) > 1:
                    ax.fill_between(epoch[tested], test[:, tested].min(0), test[:, tested].max(0),
                                    color=palette_color(i), alpha=0.2, lw=0)  # fmt: skip
            for drop in lr_drops:
                ax.axvline(drop, color="0.5", ls=":", lw=1.0)
            for k, (label, level) in enumerate(levels.items()):
                ax.axhline(level, color="black", ls=("-.", (0, (1, 3)))[k % 2], lw=1.0, label=label)
            kinds = [Line2D([], [], color="0.3", ls="--", lw=1.0, label="train"),
                     Line2D([], [], color="0.3", ls="-", lw=2.4, label="test")]  # fmt: skip
            ax.legend(handles=ax.get_legend_handles_labels()[0] + kinds)
            ax.set_title(panel)
            ax.set_xlabel("epoch")
            ax.set_ylim(*ylim)
        axes[0].set_ylabel("error (%)")
        fig.suptitle(title)
        return finish_figure(fig)


def time_to_error(
    runs: Mapping[str, History | Sequence[History]],
    *,
    title: str,
    reference: Mapping[str, float] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Test error against wall-clock time (log scale): one point per tested epoch, at the run's
    seconds up to the end of that epoch; several seeds of a run (a list) in one colour.
    `reference` maps labels to published errors (fractions), drawn as horizontal lines."""
    with style():
        fig, ax = figure_and_axes(ax, (6.4, 4.2))
        for i, (name, run) in enumerate(runs.items()):
            seeds = run if isinstance(run, (list, tuple)) else [run]
            for k, history in enumerate(seeds):
                seconds = np.cumsum(as_numbers(history.seconds))
                error = as_percent(history.test_error, f"runs[{name!r}].test_error")
                tested = np.isfinite(error)
                ax.plot(seconds[tested], error[tested], "o-", ms=3.5, lw=1.4,
                        color=palette_color(i), label=name if k == 0 else None)  # fmt: skip
        for k, (label, level) in enumerate((reference or {}).items()):
            level = float(as_percent([level], f"reference[{label!r}]")[0])
            ax.axhline(level, color="black", ls=("-.", (0, (1, 3)))[k % 2], lw=1.0, label=label)
        ax.set_xscale("log")
        ax.set_xlabel("wall-clock seconds since the start of training (log scale)")
        ax.set_ylabel("test error (%)")
        ax.legend()
        ax.set_title(title)
        return finish_figure(fig)


def lr_schedule(
    schedules: Mapping[str, Sequence[float]],
    *,
    steps_per_epoch: int | None = None,
    log: bool = False,
    title: str = "Learning-rate schedules",
    ax: Axes | None = None,
) -> Figure:
    """Learning rate (name → one per optimiser step) against iteration, or against epoch when
    ``steps_per_epoch`` is given; ``log`` makes step decays equal steps."""
    with style():
        fig, ax = figure_and_axes(ax, (6.4, 3.6))
        for i, (name, rates) in enumerate(schedules.items()):
            lr = as_numbers(rates)
            if log:
                positive(lr, f"schedules[{name!r}]")
            x = np.arange(len(lr), dtype=float) / (steps_per_epoch or 1)
            ax.plot(x, lr, color=palette_color(i), label=name, drawstyle="steps-post")
        ax.set_xlabel("iteration" if steps_per_epoch is None else "epoch")
        ax.set_ylabel("learning rate")
        if log:
            log_y(ax)
        ax.legend()
        ax.set_title(title)
        return finish_figure(fig)


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
        errors: name → error fraction at each of `depths` (NaN where not run).
        reference: name → published error fractions at the same depths; dotted, open
            markers, in the colour of the series with the same name.
        spread: name (of `errors`) → uncertainty (a fraction) at each depth: ± error bars.
    """
    check_drawn(spread, "spread", errors, "errors")
    d = as_numbers(depths)
    colors = {name: palette_color(i) for i, name in enumerate(errors)}
    with style():
        fig, ax = figure_and_axes(ax, (5.6, 3.8))
        for name, values in errors.items():
            y = as_percent(values, f"errors[{name!r}]")
            ax.plot(d, y, "o-", color=colors[name], label=name)
            if spread and name in spread:
                e = as_percent(spread[name], f"spread[{name!r}]")
                ax.errorbar(d, y, yerr=e, fmt="none", ecolor=colors[name], capsize=3)
        for i, (name, values) in enumerate((reference or {}).items()):
            y = as_percent(values, f"reference[{name!r}]")
            color = colors.get(name, palette_color(len(errors) + i))
            ax.plot(d, y, "o:", color=color, mfc="white", label=f"{name} ({reference_label})")
        ax.set_xticks(d, [f"{v:g}" for v in d])
        ax.set_xlabel("depth (weighted layers)")
        ax.set_ylabel(ylabel)
        ax.legend()
        ax.set_title(title)
        return finish_figure(fig)


def error_vs_labels(
    labels_per_class: Sequence[int],
    errors: Mapping[str, Sequence[Sequence[float]]],
    *,
    chance: float | None = None,
    title: str = "Test error against labelled examples",
    ax: Axes | None = None,
) -> Figure:
    """Test error (%) against labelled images per class (log x), one line per method: the
    median over seeds, in a band from the lowest seed's error to the highest's.

    Args:
        errors: method name → for each of `labels_per_class`, the errors (fractions) of its seeds.
        chance: the error of guessing (a fraction), drawn as a dashed line.
    """
    x = positive(as_numbers(labels_per_class), "labels_per_class")
    with style():
        fig, ax = figure_and_axes(ax, (6.0, 4.2))
        for i, (name, runs) in enumerate(errors.items()):
            if len(runs) != len(x):
                raise ValueError(f"errors[{name!r}] has {len(runs)} budgets, not {len(x)}")
            y = [as_percent(seeds, f"errors[{name!r}]") for seeds in runs]
            color = palette_color(i)
            ax.plot(x, [np.median(v) for v in y], "o-", color=color, label=name)
            ax.fill_between(x, [v.min() for v in y], [v.max() for v in y], color=color,
                            alpha=0.18, lw=0)  # fmt: skip
        if chance is not None:
            ax.axhline(100 * chance, color="0.4", ls="--", lw=1.0, label="chance")
        ax.set_xscale("log")
        ax.set_xticks(x, [f"{v:g}" for v in x])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("labelled training images per class")
        ax.set_ylabel("test error (%)")
        ax.set_ylim(0, 100)
        ax.set_title(title)
        return finish_figure(fig)


# --------------------------------------------------------------------------- through depth


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

    `norms` maps each network to its norms, numbers or ``(block name, norm)`` pairs as
    ``measure.gradient_norms`` returns; with names, dotted lines mark where a stage begins.
    """
    with style():
        fig, ax = figure_and_axes(ax, (6.4, 3.8))
        boundaries: set[int] = set()
        for i, (name, values) in enumerate(norms.items()):
            values = list(values)
            if values and isinstance(values[0], (tuple, list)):
                boundaries.update(_stage_starts([str(block) for block, _ in values]))
                values = [norm for _, norm in values]
            y = as_numbers(values)
            if log:
                positive(y, f"norms[{name!r}]")
            ax.plot(np.arange(1, len(y) + 1), y, "o-", color=palette_color(i), label=name, ms=3.5)
        for start in sorted(boundaries):
            ax.axvline(start - 0.5, color="0.6", ls=":", lw=1, gid="stage start")
        ax.set_xlabel("block index (input → output)")
        ax.set_ylabel(ylabel)
        if log:
            log_y(ax)
        ax.legend()
        ax.set_title(title)
        return finish_figure(fig)


def layer_responses(
    stds: Mapping[str, Sequence[tuple[str, float]]],
    *,
    title: str = "Standard deviation of layer responses",
) -> Figure:
    """He et al. 2016a, Fig. 7: the std of each 3×3 layer's response, in layer order and sorted.

    `stds` maps each network to ``measure.response_stds``'s pairs; networks with the same number
    of layers share a column: on top in layer order, below sorted from largest to smallest.
    """
    columns: dict[int, dict[str, list[tuple[str, float]]]] = {}
    hue = {name: i for i, name in enumerate(stds)}  # one colour per network, in every column
    for name, values in stds.items():
        values = list(values)
        columns.setdefault(len(values), {})[name] = values
    with style():
        fig = new_figure((6.0 * len(columns), 6.0))
        axes = fig.subplots(2, len(columns), sharey="row", squeeze=False)
        for (by_layer, by_size), (layers, nets) in zip(axes.T, columns.items()):
            for name, values in nets.items():
                y = as_numbers([std for _, std in values])
                x = np.arange(1, len(y) + 1)
                i = hue[name]
                look = {"color": palette_color(i), "marker": "osD^vP"[i % 6], "ms": 3.5,
                        "lw": 1.2}  # fmt: skip
                by_layer.plot(x, y, label=name, **look)
                by_size.plot(x, np.sort(y)[::-1], label=name, **look)
            starts = _stage_starts([str(layer) for layer, _ in next(iter(nets.values()))])
            for stage, start in enumerate(starts, 2):  # where each later stage begins
                by_layer.axvline(start - 0.5, color="0.6", ls=":", lw=1)
                by_layer.text(start, 1, f"stage {stage}", transform=by_layer.get_xaxis_transform(),
                              va="top", fontsize=SMALL_SIZE, color="0.4")  # fmt: skip
            by_layer.set_title(f"{layers} layers measured")
            by_layer.set_xlabel("layer index (original order, input → output)")
            by_size.set_xlabel("layer index (sorted by magnitude)")
            by_layer.legend()
            for ax in (by_layer, by_size):
                ax.set_ylim(bottom=0)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers are counted
        for row in axes:
            row[0].set_ylabel("std of response")
        fig.suptitle(title)
        return finish_figure(fig)
