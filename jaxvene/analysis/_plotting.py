"""Heatmaps of sweep, patching and causal-tracing tables, as matplotlib figures.

:func:`plot_grid` draws a `(rows, columns)` table, or several as panels (a `(panels, rows,
columns)` array or a dict of tables), with labelled axes, token strings as tick labels, a named
colour bar and, by default, one colour scale shared by every panel. What you pass is what you
see: axis 0 runs down, axis 1 across (so a sweep's `(layers, positions)` table shows layers
down and tokens across; transpose it for ROME's layout). :func:`save_figure` writes it.

The figures are built without pyplot (`matplotlib.figure.Figure` on an Agg canvas): nothing
changes matplotlib's backend or pyplot's list of open figures, so the same code runs headless
and in a notebook, where a returned figure is shown inline (it has a `_repr_png_`, so even a
notebook that never imported pyplot shows it).

Example::

    table = jv.sweep(model, corrupted, clean, metric=metric, progress=False)  # (layers, positions)
    fig = jv.analysis.plot_grid(table, row_label="layer", columns=tokens, colorbar_label="logit difference")
    jv.analysis.save_figure(fig, "out/patching.png")
    heads = jv.sweep(model, corrupted, clean, metric=metric, component="head_attention_value_output",
                     unit="h.pos", progress=False)  # (layers, heads, positions): a panel per layer
    jv.analysis.plot_grid(heads, panel_label="layer", row_label="head", columns=tokens)
"""

from __future__ import annotations

import functools
import io
import os
import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_grid", "save_figure"]

#: Figures are at least this wide (inches; 850 pixels at the default 100 dpi).
MIN_WIDTH = 8.5


def _panels(values, panels) -> tuple[list[str], list[np.ndarray]]:
    if isinstance(values, Mapping):
        names = [str(k) for k in values]
        tables = [np.asarray(v, dtype=float) for v in values.values()]
    else:
        array = np.asarray(values, dtype=float)
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3:
            raise ValueError(
                f"plot_grid takes a (rows, columns) table or (panels, rows, columns); got shape {array.shape} "
                "(reduce a metric's own axes first, e.g. values.mean(-1))"
            )
        tables = list(array)
        names = [] if len(tables) == 1 and panels is None else [str(p) for p in range(len(tables))]
    if panels is not None:
        if len(panels) != len(tables):
            raise ValueError(f"{len(panels)} panel names for {len(tables)} panels")
        names = [str(p) for p in panels]
    shapes = {t.shape for t in tables}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"every panel must be one (rows, columns) table of the same shape; got {sorted(shapes)}")
    return names, tables


def _labels(given, n: int, what: str) -> list[str]:
    if given is None:
        return [str(i) for i in range(n)]
    labels = [str(t) for t in given]
    if len(labels) != n:
        raise ValueError(f"{len(labels)} {what} labels for {n} {what}s")
    return labels


def _limits(tables, vmin, vmax, center):
    """(vmin, vmax, diverging) for a group of tables: diverging around `center`, or around 0
    when the values have both signs."""
    finite = np.concatenate([t[np.isfinite(t)] for t in tables] + [np.zeros(0)])
    lo = float(finite.min()) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 1.0
    if center is None and lo < 0 < hi:
        center = 0.0
    if center is not None:
        reach = max(abs(lo - center), abs(hi - center)) or 1.0
        lo, hi = center - reach, center + reach
    lo = lo if vmin is None else float(vmin)
    hi = hi if vmax is None else float(vmax)
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi, center is not None


def _ticks(ax, axis: str, labels: list[str], marked: Sequence[int], fontsize: float):
    n = len(labels)
    numeric = all(lab.lstrip("-").isdigit() for lab in labels)
    step = max(1, -(-n // 24)) if numeric else 1  # thin numbers (layers), never tokens
    where = list(range(0, n, step))
    text = [labels[i] + ("*" if i in marked else "") for i in where]
    if axis == "x":
        rotate = not numeric and max((len(t) for t in text), default=0) > 2
        ax.set_xticks(where, text, fontsize=fontsize, rotation=45 if rotate else 0, ha="right" if rotate else "center")
        if rotate:
            for tick in ax.get_xticklabels():
                tick.set_rotation_mode("anchor")
        ticks = ax.get_xticklabels()
    else:
        ax.set_yticks(where, text, fontsize=fontsize)
        ticks = ax.get_yticklabels()
    for i, tick in zip(where, ticks):
        if i in marked:
            tick.set_fontweight("bold")
    return rotate if axis == "x" else False


def _annotate(ax, image, table, fmt: str, fontsize: float):
    for (r, c), v in np.ndenumerate(table):
        if not np.isfinite(v):
            continue
        red, green, blue, _ = image.cmap(image.norm(v))
        dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
        text = format(v, fmt)
        if text.startswith("-") and float(text) == 0:  # no "-0.00"
            text = text[1:]
        ax.text(c, r, text, ha="center", va="center", fontsize=fontsize, color="white" if dark else "black")


def _colorbar(fig, image, ax, label: str, fraction: float, pad: float):
    from matplotlib.ticker import MaxNLocator

    bar = fig.colorbar(image, ax=ax, label=label, fraction=fraction, pad=pad)
    bar.locator = MaxNLocator(5)
    bar.update_ticks()
    return bar


@functools.cache
def _figure_class():
    """`matplotlib.figure.Figure` with a `_repr_png_`, made on first use (importing jaxvene does
    not import matplotlib); the module's `__getattr__` finds it by name, so figures pickle."""
    from matplotlib.figure import Figure

    class _Figure(Figure):
        """A Figure that IPython shows as a PNG even where pyplot's inline backend is not set up."""

        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            self.savefig(buffer, format="png")
            return buffer.getvalue()

    _Figure.__qualname__ = _Figure.__name__
    return _Figure


def __getattr__(name: str):
    if name == "_Figure":
        return _figure_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def plot_grid(
    values,
    *,
    row_label: str = "layer",
    column_label: str = "position",
    rows: Sequence[Any] | None = None,
    columns: Sequence[Any] | None = None,
    panels: Sequence[Any] | None = None,
    panel_label: str | None = None,
    title: str | None = None,
    colorbar_label: str = "metric",
    cmap: str | Sequence[str] | None = None,
    shared_scale: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
    center: float | None = None,
    annotate: bool | None = None,
    fmt: str = ".2f",
    marked_rows: Sequence[int] = (),
    marked_columns: Sequence[int] = (),
    note: str | None = None,
    panels_per_row: int | None = None,
    dpi: float = 100,
) -> Figure:
    """A heatmap of one table, or one panel per table, as a matplotlib `Figure`.

    Args:
      values: a `(rows, columns)` array (a sweep's `(layers, positions)` or `(layers, heads)`),
        a `(panels, rows, columns)` array (a head sweep's `(layers, heads, positions)`: one
        panel per layer), or a dict `{panel name: (rows, columns)}`.
      row_label, column_label: the axes' names ("layer", "position", "head", "token").
      rows, columns: tick labels (default 0, 1, ...): token strings, layer numbers, head names.
      panels, panel_label: panel names (default the dict's keys, or 0, 1, ...), titled
        `"{panel_label} {name}"`.
      title: the figure's title (e.g. the prompt and the target token).
      colorbar_label: what the colour means ("p('Paris')", "logit difference").
      cmap: a matplotlib colormap name, or one per panel; default "Blues", or "RdBu_r" centred
        on 0 when the values have both signs.
      shared_scale: one colour scale (and one colour bar, if one colormap) for every panel;
        False gives each panel its own scale and bar.
      vmin, vmax, center: fix the scale's ends; `center` makes it diverging around a value.
      annotate: write each cell's value (`fmt`) in it; default when a panel has at most 120 cells.
      marked_rows, marked_columns: tick labels to mark with `*` in bold (e.g. the subject's
        tokens); say what the mark means in `note`, written under the panels.
      panels_per_row: wrap panels onto several rows (default: up to 4 in a row).
      dpi: resolution; the figure is at least 8.5 inches wide (850 pixels at 100 dpi).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    names, tables = _panels(values, panels)
    n_rows, n_cols = tables[0].shape
    row_text = _labels(rows, n_rows, row_label)
    col_text = _labels(columns, n_cols, column_label)
    cmaps = [cmap] * len(tables) if cmap is None or isinstance(cmap, str) else list(cmap)
    if len(cmaps) != len(tables):
        raise ValueError(f"{len(cmaps)} colormaps for {len(tables)} panels")
    groups = [tables] if shared_scale else [[t] for t in tables]
    limits = [_limits(g, vmin, vmax, center) for g in groups]
    one_bar = shared_scale and len(set(cmaps)) == 1
    annotate = n_rows * n_cols <= 120 if annotate is None else annotate

    label_chars = max(len(t) for t in row_text) + (1 if marked_rows else 0)
    cell_w = 0.55 if annotate else (0.3 if n_cols <= 30 else 0.22)
    panel_w = max(1.6, n_cols * cell_w)
    if panels_per_row is None:  # up to 4 in a row, about 16 inches at most, rows balanced
        most = max(1, min(4, int(16 // (panel_w + 0.3))))
        panels_per_row = -(-len(tables) // -(-len(tables) // most))
    per_row = min(len(tables), panels_per_row)
    grid_rows = -(-len(tables) // per_row)
    bar_w = 1.1 if one_bar else 1.1 * per_row
    width = max(MIN_WIDTH, 0.9 + 0.08 * label_chars + per_row * (panel_w + 0.3) + bar_w)
    tick_chars = max(len(t) for t in col_text) + (1 if marked_columns else 0)
    col_ticks_h = 0.35 + (0.06 * tick_chars if not all(t.lstrip("-").isdigit() for t in col_text) else 0)
    panel_h = max(2.2, n_rows * 0.32) + col_ticks_h + 0.45 + (0.3 if names else 0)
    if title:  # wrapped to the figure's width (about 12 characters an inch at 11 points)
        title = "\n".join(textwrap.fill(line, int(width * 11)) for line in title.split("\n"))
    height = grid_rows * panel_h + (0.25 * (title.count("\n") + 1) + 0.2 if title else 0) + (0.35 if note else 0)

    fig = _figure_class()(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(grid_rows, per_row, squeeze=False, sharey=True)
    images = []
    for i, table in enumerate(tables):
        ax = axes[i // per_row, i % per_row]
        lo, hi, diverging = limits[0 if shared_scale else i]
        name = cmaps[i] or ("RdBu_r" if diverging else "Blues")
        image = ax.imshow(table, cmap=name, vmin=lo, vmax=hi, aspect="auto", interpolation="nearest")
        images.append(image)
        _ticks(ax, "x", col_text, marked_columns, 9 if n_cols <= 30 else 7)
        _ticks(ax, "y", row_text, marked_rows, 9 if n_rows <= 30 else 7)
        ax.tick_params(labelleft=i % per_row == 0)
        if i % per_row == 0:
            ax.set_ylabel(row_label)
        ax.set_xlabel(column_label)
        if names:
            ax.set_title(f"{panel_label} {names[i]}" if panel_label else names[i], fontsize=10)
        if annotate:
            _annotate(ax, image, table, fmt, 8 if n_cols <= 12 else 6.5)
        if not one_bar:
            _colorbar(fig, image, ax, colorbar_label, 0.08, 0.03)
    for j in range(len(tables), grid_rows * per_row):
        axes[j // per_row, j % per_row].set_visible(False)
    if one_bar:
        used = [axes[i // per_row, i % per_row] for i in range(len(tables))]
        _colorbar(fig, images[0], used, colorbar_label, 0.05 if len(tables) > 1 else 0.08, 0.02)
    if title:
        fig.suptitle(title, fontsize=11)
    if note:
        fig.supxlabel(note, fontsize=9, color="0.3")
    return fig


def save_figure(fig: Figure, path: str, dpi: float | None = None) -> str:
    """Write `fig` (a PNG, or whatever `path`'s extension names), creating its folder; returns
    `path`."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    fig.savefig(path, dpi=fig.dpi if dpi is None else dpi)
    return path
