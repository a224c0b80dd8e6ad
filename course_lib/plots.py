"""Matplotlib figures in one consistent style; every function returns the Figure."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

COLORS = ["#1f6f8b", "#e07a5f", "#3d9970", "#9b5de5", "#f2a541", "#5c677d", "#d62839", "#00a6a6"]

STYLE = {
    "figure.figsize": (7.0, 3.8),
    "figure.dpi": 90,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=COLORS),
    "font.size": 10,
    "axes.titleweight": "bold",
    "legend.frameon": False,
}


def use_course_style() -> None:
    """Apply the course's matplotlib style globally."""
    plt.rcParams.update(STYLE)


def _new_axes(ax=None, figsize=None):
    use_course_style()
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax


def _check_mapping(values: Mapping, what: str) -> None:
    if not values:
        raise ValueError(f"Nothing to plot: {what} is empty.")


def plot_curves(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], ylabel: str = "loss",
                title: str = "", xlabel: str = "step", logy: bool = False, ax=None) -> Figure:
    """Line plot of named (x, y) series, e.g. loss curves of several runs."""
    _check_mapping(curves, "curves")
    fig, ax = _new_axes(ax)
    for label, (xs, ys) in curves.items():
        ax.plot(xs, ys, marker="o" if len(xs) < 15 else None, ms=3, label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logy:
        ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_histories(histories: Mapping[str, "object"], key: str = "val_loss", title: str = "",
                   logy: bool = False, ax=None) -> Figure:
    """Compare one logged quantity (e.g. val_accuracy) across several training Histories."""
    _check_mapping(histories, "histories")
    return plot_curves({name: h.series(key) for name, h in histories.items()}, ylabel=key, title=title,
                       logy=logy, ax=ax)


def plot_bars(values: Mapping[str, float], ylabel: str = "", title: str = "", log: bool = False,
              fmt: str = "{:,.3g}", ax=None, errors: Mapping[str, float] | None = None,
              label_size: float = 8) -> Figure:
    """Bar chart of named values with the value printed on each bar (``errors``: ± error bars, e.g. seed std;
    ``label_size``: the printed values' font size in points)."""
    _check_mapping(values, "values")
    fig, ax = _new_axes(ax)
    names, heights = list(values), list(values.values())
    yerr = [errors[n] for n in names] if errors is not None else None
    bars = ax.bar(names, heights, yerr=yerr, capsize=4 if yerr else 0,
                  color=[COLORS[i % len(COLORS)] for i in range(len(names))])
    for bar, h, e in zip(bars, heights, yerr or [0.0] * len(names)):
        ax.annotate(fmt.format(h), (bar.get_x() + bar.get_width() / 2, h + e), ha="center", va="bottom",
                    fontsize=label_size)
    if log:
        ax.set_yscale("log")
    ax.set(ylabel=ylabel, title=title)
    ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    return fig


def plot_param_counts(counts: Mapping[str, int], log: bool = False, title: str = "Parameters", ax=None) -> Figure:
    """Bar chart of parameter counts (log scale optional)."""
    return plot_bars(counts, ylabel="parameters" + (" (log scale)" if log else ""), title=title, log=log,
                     fmt="{:,.0f}", ax=ax)


def plot_storage_vs_tasks(full_model_bytes: float, module_bytes: Mapping[str, float], max_tasks: int = 20,
                          title: str = "Storage for N tasks", ax=None) -> Figure:
    """Disk needed for N tasks: N full fine-tuned copies vs one base + N small modules each (MB or GB axis)."""
    if max_tasks < 1:
        raise ValueError(f"max_tasks must be >= 1, got {max_tasks}.")
    fig, ax = _new_axes(ax)
    n = list(range(1, max_tasks + 1))
    unit, scale = ("GB", 1024 ** 3) if max_tasks * full_model_bytes >= 1024 ** 3 else ("MB", 1024 ** 2)
    ax.plot(n, [k * full_model_bytes / scale for k in n], marker="o", ms=3, label="full fine-tuning (N copies)")
    for name, b in module_bytes.items():
        ax.plot(n, [(full_model_bytes + k * b) / scale for k in n], marker="o", ms=3, label=f"base + N x {name}")
    ax.set(xlabel="number of tasks N", ylabel=f"storage ({unit})", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_grouped_bars(table: Mapping[str, Mapping[str, float]], ylabel: str = "", title: str = "",
                      fmt: str = "{:.2f}", ylim: tuple[float, float] | None = None, ax=None) -> Figure:
    """Bars grouped by row key, one colour per column key: ``{group: {series: value}}``."""
    _check_mapping(table, "table")
    fig, ax = _new_axes(ax)
    groups = list(table)
    series = list(dict.fromkeys(s for row in table.values() for s in row))
    width = 0.8 / len(series)
    for j, name in enumerate(series):
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(groups))]
        heights = [table[g].get(name, float("nan")) for g in groups]
        bars = ax.bar(xs, heights, width=width, label=name, color=COLORS[j % len(COLORS)])
        for bar, h in zip(bars, heights):
            ax.annotate(fmt.format(h), (bar.get_x() + bar.get_width() / 2, h), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(groups)), groups)
    ax.set(ylabel=ylabel, title=title)
    if ylim:
        ax.set_ylim(*ylim)
    ax.legend(loc="lower right", framealpha=0.9, frameon=True)
    fig.tight_layout()
    return fig


def plot_tradeoff(points: Mapping[str, tuple[float, float]], groups: Mapping[str, str] | None = None,
                  xlabel: str = "trainable parameters (log scale)", ylabel: str = "test accuracy", title: str = "",
                  errors: Mapping[str, float] | None = None, logx: bool = True, ax=None,
                  label_size: float = 8, figsize: tuple[float, float] = (8.0, 4.6)) -> Figure:
    """Scatter of named (x, y) points, e.g. quality vs trainable parameters, coloured by group, each one labelled
    (``label_size``: the point labels' and legend's font size in points; ``figsize`` in inches, without ``ax``)."""
    _check_mapping(points, "points")
    groups = groups or {}
    missing = set(groups) - set(points)
    if missing:
        raise ValueError(f"groups names points that do not exist: {sorted(missing)}; points are {list(points)}")
    fig, ax = _new_axes(ax, figsize=figsize)
    palette = {g: COLORS[i % len(COLORS)] for i, g in enumerate(dict.fromkeys(groups.get(n, "") for n in points))}
    seen = set()
    for name, (x, y) in points.items():
        group = groups.get(name, "")
        err = (errors or {}).get(name)
        ax.errorbar([x], [y], yerr=None if err is None else [err], fmt="o", ms=7, color=palette[group], capsize=3,
                    label=group if group and group not in seen else None)
        seen.add(group)
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    _label_points(ax, points, fontsize=label_size)
    if any(groups.values()):
        ax.legend(loc="best", fontsize=label_size)
    fig.tight_layout()
    return fig


def _label_points(ax, points: Mapping[str, tuple[float, float]], fontsize: float = 8) -> None:
    """Label each point, moving a label down a line while it would overlap one placed before (high points first)."""
    ax.figure.canvas.draw()  # fix the limits, so data -> pixel positions are final
    line = fontsize * 1.4 * ax.figure.dpi / 72  # one text line, in pixels
    placed: list[tuple[float, float, float]] = []  # (left, right, baseline) of labels, in pixels
    right_edge = ax.transAxes.transform((1.0, 0.0))[0]
    for name, (x, y) in sorted(points.items(), key=lambda item: -item[1][1]):
        px, py = ax.transData.transform((x, y))
        width = len(name) * fontsize * 0.55 * ax.figure.dpi / 72
        flip = px + 5 + width > right_edge  # no room on the right: put the label on the left of the point
        left = px - 5 - width if flip else px + 5
        dy = 4.0
        while any(left < r and left + width > l and abs(py + dy * ax.figure.dpi / 72 - b) < line
                  for l, r, b in placed):
            dy -= line * 72 / ax.figure.dpi
        placed.append((left, left + width, py + dy * ax.figure.dpi / 72))
        moved = dy < 0  # pushed below its point: a thin leader line says which point it names
        ax.annotate(name, (x, y), xytext=(-5 if flip else 5, dy), textcoords="offset points", fontsize=fontsize,
                    ha="right" if flip else "left",
                    arrowprops=dict(arrowstyle="-", lw=0.5, color="#999999") if moved else None)
