"""Charts drawn for the slide: a notebook table's own numbers, plotted by course_lib.plots (the course's style) at
slide size with every text at SLIDE_PT or more, for results whose notebook figure is too small to read on a
projector."""

from __future__ import annotations

import io
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from course_lib.plots import COLORS, plot_bars, plot_tradeoff, use_course_style  # noqa: E402
from slides.tables import Table  # noqa: E402

SLIDE_PT = 17.0               # every text of a chart; the browser check wants 16 pt on the slide
DPI = 100
SIZE_PX = (1100, 520)         # fits under a two-line title without shrinking
KINDS = ("bar", "line", "scatter")


def number(text: str, where: str) -> float:
    """A table cell as a number ('1,234', '0.32%', '+0.005' are numbers; '·' or 'n/a' are not)."""
    cleaned = text.replace(",", "").replace("%", "").replace("−", "-").strip()
    try:
        return float(cleaned)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a number") from None


def decimals(text: str) -> int:
    """Digits after the decimal point of a cell as the notebook printed it."""
    match = re.search(r"\.(\d+)", text)
    return len(match.group(1)) if match else 0


def enlarge_text(fig: plt.Figure) -> None:
    """Every text of the figure at SLIDE_PT or larger (titles keep their relative size)."""
    for ax in fig.axes:
        ax.tick_params(which="both", labelsize=SLIDE_PT)
    for text in fig.findobj(Text):
        if text.get_text() and text.get_fontsize() < SLIDE_PT:
            text.set_fontsize(SLIDE_PT)


def values(table: Table, name: str) -> list[float]:
    """A column's cells as numbers."""
    index = table.index(name)
    return [number(row[index], f"row {row[0]!r}, column {name!r}") for row in table.rows]


def line_chart(table: Table, ys: list[str], errs: list[str], log: bool, xlabel: str, ylabel: str) -> plt.Figure:
    """One line per column in `ys` against the row labels read as numbers (ranks, sizes, steps), ± `errs`."""
    use_course_style()
    xs = [number(row[0], f"row label {row[0]!r}") for row in table.rows]
    fig, ax = plt.subplots(figsize=(SIZE_PX[0] / DPI, SIZE_PX[1] / DPI))
    for n, name in enumerate(ys):
        err = values(table, errs[n]) if n < len(errs) else None
        ax.errorbar(xs, values(table, name), yerr=err, marker="o", ms=6, capsize=4 if err else 0,
                    color=COLORS[n % len(COLORS)], label=name)
    if log:
        ax.set_xscale("log")
        ax.minorticks_off()
    ax.set_xticks(xs, [row[0] for row in table.rows])  # a tick at each measured size, labelled as the table does
    ax.set(xlabel=xlabel or table.header[0], ylabel=ylabel)
    if len(ys) > 1:
        ax.legend(fontsize=SLIDE_PT)
    return fig


def chart_png(table: Table, kind: str, y: str | list[str], x: str | None = None, err: str | list[str] | None = None,
              group: str | None = None, log: bool = False, xlabel: str = "", ylabel: str = "") -> bytes:
    """Draw a table at slide size: `bar` (rows on the x axis, column `y`), `line` (one line per column in `y`
    against the row labels read as numbers) or `scatter` (columns `x` and `y`, each row labelled). `err` holds
    ± errors (one column, or one per `y` for lines), `group` a column that colours scatter points, `log` a log
    axis for the sizes (y for bars, x otherwise)."""
    if kind not in KINDS:
        raise ValueError(f"chart kind={kind!r}; allowed: {', '.join(KINDS)}")
    ys = [y] if isinstance(y, str) else list(y)
    errs = [] if err is None else ([err] if isinstance(err, str) else list(err))
    if kind == "line":
        with plt.rc_context({"font.size": SLIDE_PT}):
            return finish(line_chart(table, ys, errs, log, xlabel, ylabel))
    y, err = ys[0], (errs[0] if errs else None)
    labels = [row[0] for row in table.rows]
    heights = values(table, y)
    errors = dict(zip(labels, values(table, err))) if err else None
    with plt.rc_context({"font.size": SLIDE_PT}):
        if kind == "bar":
            places = max(decimals(row[table.index(y)]) for row in table.rows)
            fig = plot_bars(dict(zip(labels, heights)), ylabel=ylabel or y, log=log, fmt=f"{{:.{places}f}}",
                            errors=errors, label_size=SLIDE_PT)
        else:
            if not x:
                raise ValueError("a scatter chart needs `x`, the column on the horizontal axis")
            groups = {row[0]: row[table.index(group)] for row in table.rows} if group else None
            fig = plot_tradeoff(dict(zip(labels, zip(values(table, x), heights))), groups=groups,
                                xlabel=xlabel or x, ylabel=ylabel or y, errors=errors, logx=log,
                                label_size=SLIDE_PT, figsize=(SIZE_PX[0] / DPI, SIZE_PX[1] / DPI))
        return finish(fig)


def finish(fig: plt.Figure) -> bytes:
    """The figure at slide size with every text at SLIDE_PT or more, as PNG bytes."""
    fig.set_size_inches(SIZE_PX[0] / DPI, SIZE_PX[1] / DPI)
    fig.set_dpi(DPI)
    enlarge_text(fig)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    plt.close(fig)
    return buffer.getvalue()
