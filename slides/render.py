"""Slides as HTML: an outline's slides, with the notebook's figures, tables, printed results and code, in reveal.js
markup (one horizontal row of slides, so → reaches every one)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Callable

import mistune
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from slides.charts import DPI, SLIDE_PT, chart_png
from slides.figures import NOTEBOOK_TEXT_PX, panel, png_size
from slides.mathml import markdown_with_mathml
from slides.outline import Outline, Slide, Visual
from slides.sources import NotebookSource

TEMPLATES = Path(__file__).resolve().parent / "templates"
FIGURE_MAX_UPSCALE = 2.4   # notebook figures are drawn at 90 dpi with 10 pt text; 1.7x is 16 pt on the slide
CODE_STYLE = HtmlFormatter(style="friendly").get_style_defs(".reveal .slide-code")
_markdown = mistune.create_markdown(escape=False, plugins=["strikethrough", "table"])


def markdown(text: str, math_errors: list[str]) -> str:
    """Markdown with TeX formulas as MathML, as HTML."""
    return _markdown(markdown_with_mathml(text, math_errors)) if text.strip() else ""


def inline(text: str, math_errors: list[str]) -> str:
    """One line of Markdown (a title) as inline HTML."""
    rendered = markdown(text, math_errors).strip()
    return re.sub(r"^<p>(.*)</p>$", r"\1", rendered, flags=re.S)


def pick_lines(text: str, lines: tuple[int, int] | None, where: str) -> str:
    """Lines first..last (1-based) of a text."""
    if lines is None:
        return text
    all_lines = text.split("\n")
    first, last = lines
    if last > len(all_lines):
        raise ValueError(f"{where}: lines {first}-{last} asked, the text has {len(all_lines)} lines")
    return "\n".join(all_lines[first - 1:last])


def image_html(png: bytes, text_px: float, upscale: float, alt: str) -> str:
    """An <img> that may grow to `upscale` times its size; `text_px` is its smallest text in pixels at 1x (the
    browser check turns it into points on the slide)."""
    width, height = png_size(png)
    data = base64.b64encode(png).decode("ascii")
    style = f"max-width:{width * upscale:.0f}px;max-height:{height * upscale:.0f}px"
    return (f'<img class="slide-figure" alt="{alt}" data-text-px="{text_px:.2f}" style="{style}" '
            f'src="data:image/png;base64,{data}">')


def chart_html(source: NotebookSource, shown: Visual) -> str:
    """A chart of a notebook table's numbers, drawn at slide size (slides/charts.py)."""
    try:
        png = chart_png(source.table(shown.cell, shown.index).select(shown.rows), **dict(shown.chart))
    except ValueError as err:
        raise ValueError(f"{source.path.name}, chart of {shown.cell!r}: {err}") from err
    return image_html(png, SLIDE_PT * DPI / 72, 1.0, "chart of the notebook's table")


def figure_html(source: NotebookSource, shown: Visual) -> str:
    """An <img> of a notebook figure (or one panel of it), allowed to grow to FIGURE_MAX_UPSCALE times its size."""
    png = source.png(shown.cell, shown.index)
    if shown.panel:
        try:
            png = panel(png, *shown.panel)
        except ValueError as err:
            raise ValueError(f"{source.path.name}, figure of {shown.cell!r}: {err}") from err
    return image_html(png, NOTEBOOK_TEXT_PX, FIGURE_MAX_UPSCALE, "figure from the notebook")


def visual_html(source: NotebookSource, shown: Visual, math_errors: list[str]) -> str:
    """The HTML of a slide's visual."""
    where = f"{source.path.name}, {shown.kind} of {shown.cell!r}"
    if shown.kind == "figure":
        return figure_html(source, shown)
    if shown.kind == "chart":
        return chart_html(source, shown)
    if shown.kind == "table":
        full = source.table(shown.cell, shown.index)
        try:
            table = full.select(shown.rows, shown.columns)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from err
        return table.to_html(more=len(full.rows) - len(table.rows))
    if shown.kind == "output":
        text = pick_lines(source.text(shown.cell, shown.output_kind, shown.index), shown.lines, where)
        if shown.output_kind == "markdown":
            return f'<div class="slide-result">{markdown(text, math_errors)}</div>'
        return f'<pre class="slide-output">{html.escape(text)}</pre>'
    code = pick_lines(source.code(shown.cell), shown.lines, where)
    return f'<pre class="slide-code">{highlight(code, PythonLexer(), HtmlFormatter(nowrap=True))}</pre>'


Sources = Callable[[str], NotebookSource]  # a notebook path under notebooks/ -> the notebook, read once


def slide_html(sources: Sources, notebook: str, slide: Slide, math_errors: list[str]) -> dict:
    """The parts of one slide for the deck template; visuals come from `notebook` unless they name another."""
    shown = slide.visual
    return {
        "title": inline(slide.title, math_errors),
        "text": markdown(slide.text, math_errors),
        "visual": visual_html(sources(shown.notebook or notebook), shown, math_errors) if shown else "",
        "visual_kind": {"chart": "figure"}.get(shown.kind, shown.kind) if shown else "",
        "notes": markdown(slide.notes, math_errors),
        "layout": slide.layout,
    }


def environment() -> Environment:
    """The Jinja environment of the deck templates."""
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                       trim_blocks=True, lstrip_blocks=True)


def deck_html(title: str, title_slide: dict, slides: list[dict], assets: str, home: str | None) -> str:
    """A whole deck page."""
    return environment().get_template("deck.html.j2").render(
        title=title, title_slide=title_slide, slides=slides, assets=assets, home=home, code_style=CODE_STYLE)


def lecture_html(outline: Outline, sources: Sources, assets: str, home: str | None,
                 math_errors: list[str]) -> tuple[str, int]:
    """A lecture deck from its outline and notebook; returns the page and its slide count."""
    deck_title = sources(outline.notebook).title()
    title_slide = {
        "title": inline(deck_title, math_errors),
        "subtitle": inline(outline.subtitle, math_errors) if outline.subtitle else "",
        "source": f"PEFT from scratch · notebooks/{outline.notebook}",
        "notes": markdown(outline.notes, math_errors),
    }
    slides = [slide_html(sources, outline.notebook, slide, math_errors) for slide in outline.slides]
    return deck_html(deck_title, title_slide, slides, assets, home), 1 + len(slides)
