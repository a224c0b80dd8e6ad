"""Lecture outlines: one YAML file per deck in slides/lectures/, read and checked with errors that name the file,
the slide and the key.

A deck is its notebook's title slide, then the outline's slides in order. Each slide has a takeaway `title` and
any of: `text` (Markdown with $TeX$, at most MAX_WORDS words: the rest belongs in `notes`), one visual (`figure`,
`table`, `output` or `code`, each pointing at a notebook cell by a piece of its source), and `notes` (Markdown,
shown in the speaker view). See slides/README.md for every key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

MAX_WORDS = 45          # body text on a slide; the guide is about 40
MAX_TITLE_CHARS = 90    # two lines of a 40px title
VISUALS = ("figure", "chart", "table", "output", "code")
CHART_OPTIONS = ("kind", "x", "y", "err", "group", "log", "xlabel", "ylabel")
SLIDE_KEYS = {"title", "text", "notes", "layout", *VISUALS}
VISUAL_KEYS = {
    "figure": {"cell", "index", "panel", "notebook"},
    "chart": {"cell", "index", "rows", "notebook", *CHART_OPTIONS},
    "table": {"cell", "index", "rows", "columns", "notebook"},
    "output": {"cell", "index", "kind", "lines", "notebook"},
    "code": {"cell", "lines", "notebook"},
}
LAYOUTS = ("stack", "side")
DECK_KEYS = {"notebook", "subtitle", "notes", "slides"}


@dataclass(frozen=True)
class Visual:
    """One thing from the notebook: a figure (or one panel of it), a table, a printed output, or code."""

    kind: str
    cell: str
    index: int = 0
    panel: tuple[int, int] | None = None
    rows: int | tuple[str, ...] | None = None
    columns: tuple[str, ...] | None = None
    output_kind: str = "text"
    lines: tuple[int, int] | None = None
    notebook: str | None = None   # another notebook than the deck's (the overview deck shows several)
    chart: tuple[tuple[str, object], ...] = ()   # a chart's options (slides/charts.py), as (key, value) pairs


@dataclass(frozen=True)
class Slide:
    """One slide: a takeaway title, a little text, at most one visual, and speaker notes."""

    title: str
    text: str = ""
    visual: Visual | None = None
    notes: str = ""
    layout: str = "stack"


@dataclass(frozen=True)
class Outline:
    """A deck: the notebook it is built from and its slides after the title slide."""

    path: Path
    notebook: str
    slides: tuple[Slide, ...]
    subtitle: str = ""
    notes: str = ""


def words(markdown: str) -> int:
    """Words of body text: a formula counts as one word, markup, list bullets and table rows as none."""
    markdown = "\n".join(line for line in markdown.split("\n") if not line.lstrip().startswith("|"))
    text = re.sub(r"\$\$.*?\$\$|\$[^$]+\$", " formula ", markdown, flags=re.S)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return len([w for w in re.split(r"\s+", re.sub(r"[*_`#>|]", " ", text)) if re.search(r"\w", w)])


def line_range(value: object, where: str) -> tuple[int, int]:
    """'3-8' or [3, 8] (1-based, inclusive) as a pair."""
    if isinstance(value, str) and re.fullmatch(r"\d+-\d+", value):
        first, last = (int(part) for part in value.split("-"))
    elif isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        first, last = value
    else:
        raise ValueError(f"{where}: lines={value!r}; write a 1-based range such as '3-8'")
    if not 1 <= first <= last:
        raise ValueError(f"{where}: lines={value!r}; the range must start at 1 or later and not run backwards")
    return first, last


def visual(kind: str, spec: object, where: str) -> Visual:
    """Check one visual's keys and values."""
    if isinstance(spec, str):
        spec = {"cell": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("cell"), str) or not spec["cell"].strip():
        raise ValueError(f"{where}: {kind} needs `cell`, a piece of the notebook cell's source")
    unknown = set(spec) - VISUAL_KEYS[kind]
    if unknown:
        raise ValueError(f"{where}: unknown {kind} key(s) {sorted(unknown)}; allowed: {sorted(VISUAL_KEYS[kind])}")
    index = spec.get("index", 0)
    if not isinstance(index, int) or index < 0:
        raise ValueError(f"{where}: index={index!r}; it counts the cell's outputs of that kind from 0")
    panel = None
    if "panel" in spec:
        match = re.fullmatch(r"(\d+)/(\d+)", str(spec["panel"]))
        if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
            raise ValueError(f"{where}: panel={spec['panel']!r}; write 'i/n' for panel i of n side by side")
        panel = (int(match.group(1)), int(match.group(2)))
    rows = spec.get("rows")
    if isinstance(rows, list) and rows and all(isinstance(r, str) for r in rows):
        rows = tuple(rows)
    elif rows is not None and (not isinstance(rows, int) or isinstance(rows, bool) or rows < 1):
        raise ValueError(f"{where}: rows={rows!r}; the number of top rows, or a list of row labels")
    columns = spec.get("columns")
    if columns is not None and (not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)):
        raise ValueError(f"{where}: columns={columns!r}; a list of column names")
    output_kind = spec.get("kind", "text") if kind == "output" else "text"
    if output_kind not in ("text", "markdown"):
        raise ValueError(f"{where}: kind={output_kind!r}; allowed: 'text' (printed) or 'markdown' (generated)")
    lines = line_range(spec["lines"], where) if "lines" in spec else None
    notebook = spec.get("notebook")
    if notebook is not None and (not isinstance(notebook, str) or not notebook.endswith(".ipynb")):
        raise ValueError(f"{where}: notebook={notebook!r}; a notebook path under notebooks/, e.g. '13_capstone.ipynb'")
    chart = ()
    if kind == "chart":
        y = spec.get("y")
        names = [y] if isinstance(y, str) else y
        if spec.get("kind") not in ("bar", "line", "scatter") or not (
                isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
            raise ValueError(f"{where}: a chart needs kind (bar, line or scatter) and y (a column name, or a list of "
                             f"them for a line chart); got kind={spec.get('kind')!r}, y={y!r}")
        if isinstance(y, list):
            spec = {**spec, "y": tuple(y)}
        if isinstance(spec.get("err"), list):
            spec = {**spec, "err": tuple(spec["err"])}
        if spec["kind"] == "scatter" and not isinstance(spec.get("x"), str):
            raise ValueError(f"{where}: a scatter chart needs x, the column on the horizontal axis")
        if not isinstance(spec.get("log", False), bool):
            raise ValueError(f"{where}: log={spec['log']!r}; true or false")
        chart = tuple((key, spec[key]) for key in CHART_OPTIONS if key in spec)
    return Visual(kind, spec["cell"], index, panel, rows, tuple(columns) if columns else None, output_kind, lines,
                  notebook, chart)


def slide(spec: object, where: str) -> Slide:
    """Check one slide's keys and values."""
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: a slide is a mapping with at least a `title`")
    unknown = set(spec) - SLIDE_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(SLIDE_KEYS)}")
    title = spec.get("title")
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"{where}: every slide needs a takeaway `title`")
    if len(title) > MAX_TITLE_CHARS:
        raise ValueError(f"{where}: the title has {len(title)} characters; at most {MAX_TITLE_CHARS}")
    text = spec.get("text", "") or ""
    if words(text) > MAX_WORDS:
        raise ValueError(f"{where} ({title!r}): {words(text)} words of text; at most {MAX_WORDS} — move the rest "
                         "to `notes`")
    kinds = [kind for kind in VISUALS if kind in spec]
    if len(kinds) > 1:
        raise ValueError(f"{where}: one visual per slide, got {kinds}; split the slide")
    layout = spec.get("layout", "stack")
    if layout not in LAYOUTS:
        raise ValueError(f"{where}: layout={layout!r}; allowed: {', '.join(LAYOUTS)}")
    shown = visual(kinds[0], spec[kinds[0]], where) if kinds else None
    if not text.strip() and shown is None:
        raise ValueError(f"{where} ({title!r}): the slide shows nothing but its title; add `text` or a visual")
    return Slide(title.strip(), text.strip(), shown, (spec.get("notes") or "").strip(), layout)


def load(path: Path) -> Outline:
    """Read and check a lecture outline."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path.name}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: expected a mapping with `notebook` and `slides`")
    unknown = set(data) - DECK_KEYS
    if unknown:
        raise ValueError(f"{path.name}: unknown key(s) {sorted(unknown)}; allowed: {sorted(DECK_KEYS)}")
    if not isinstance(data.get("notebook"), str) or not isinstance(data.get("slides"), list) or not data["slides"]:
        raise ValueError(f"{path.name}: needs `notebook` (a path under notebooks/) and a non-empty `slides` list")
    slides = tuple(slide(spec, f"{path.name} slide {n}") for n, spec in enumerate(data["slides"], start=2))
    return Outline(path, data["notebook"], slides, (data.get("subtitle") or "").strip(),
                   (data.get("notes") or "").strip())
