"""Instructor slides: the outline reader, tables and figure panels cut for slides, MathML, every deck built from its
outline, and every deck stepped through with → in a real headless Chromium, slide by slide.

The browser tests skip when no Chromium is installed, unless COURSE_REQUIRE_BROWSER=1 (set by .ci/run, which
installs Debian's chromium): then a missing browser is a failure.
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
import struct
import sys
from pathlib import Path

import matplotlib
import nbformat
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from slides import outline, tables  # noqa: E402
from slides.browser import Browser, find_chromium  # noqa: E402
from slides.build import LECTURES, OVERVIEW, build, copy_assets, lecture_outlines  # noqa: E402
from slides.figures import panel, png_size  # noqa: E402
from slides.mathml import markdown_with_mathml  # noqa: E402
from slides.sources import MEASURED, NotebookSource  # noqa: E402

OUT = ROOT / "build" / "slides"
NOTEBOOKS = ROOT / "notebooks"
FONTS = ROOT / "slides" / "theme" / "fonts"
ALL_NOTEBOOKS = sorted(NOTEBOOKS.glob("[0-9]*.ipynb")) + sorted((NOTEBOOKS / "solutions").glob("*.ipynb"))
OUTLINES = lecture_outlines()
DECKS = [OVERVIEW] + [path.stem + ".html" for path in OUTLINES]
MIN_SLIDES = {"lesson": 10, "solutions": 3, "overview": 8}
NOTES_SHARE = 1.0         # lesson decks and the overview: every slide carries speaker notes


def deck_kind(deck: str) -> str:
    """overview, lesson or solutions."""
    return "overview" if deck == OVERVIEW else ("solutions" if deck.endswith("_solutions.html") else "lesson")


def write_outline(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "deck.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --- the outline reader ------------------------------------------------------------------------------------------

GOOD = """notebook: 05_lora.ipynb
slides:
  - title: LoRA learns a low-rank update
    text: "$$h = W_0 x + BAx$$"
    notes: Say it.
  - title: The figure
    figure: {cell: "plot(", panel: "2/3"}
"""


def test_outline_reads_slides_and_visuals(tmp_path):
    deck = outline.load(write_outline(tmp_path, GOOD))
    assert [s.title for s in deck.slides] == ["LoRA learns a low-rank update", "The figure"]
    assert deck.slides[1].visual == outline.Visual("figure", "plot(", panel=(2, 3))
    assert deck.slides[0].notes == "Say it."


@pytest.mark.parametrize("bad, message", [
    ("  - text: no title\n", "takeaway `title`"),
    ("  - title: T\n    colour: red\n    text: x\n", "unknown key"),
    ("  - title: T\n", "shows nothing but its title"),
    ("  - title: T\n    figure: {cell: a}\n    table: {cell: b}\n", "one visual per slide"),
    ("  - title: T\n    figure: {cell: a, panel: 4/3}\n", "panel"),
    ("  - title: T\n    figure: {cell: a, size: 2}\n", "unknown figure key"),
    ("  - title: T\n    text: x\n    layout: diagonal\n", "layout"),
    ("  - title: T\n    output: {cell: a, lines: 8-3}\n", "lines"),
    ("  - title: T\n    output: {cell: a, kind: html}\n", "kind"),
    ("  - title: T\n    chart: {cell: a, kind: pie, y: acc}\n", "kind (bar, line or scatter)"),
    ("  - title: T\n    chart: {cell: a, kind: scatter, y: acc}\n", "needs x"),
    ("  - title: T\n    text: " + "word " * 60 + "\n", "60 words"),
    ("  - title: " + "x" * 120 + "\n    text: y\n", "120 characters"),
])
def test_outline_errors_name_the_slide_and_what_is_allowed(tmp_path, bad, message):
    path = write_outline(tmp_path, "notebook: a.ipynb\nslides:\n" + bad)
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        outline.load(path)
    assert "deck.yaml slide 2" in str(err.value)


def test_words_count_a_formula_as_one_and_skip_tables():
    assert outline.words("**LoRA** adds $\\frac{\\alpha}{r} BA$ to `W0`") == 5
    assert outline.words("| a | b |\n| --- | --- |\n| many words in a row | x |\nTwo words") == 2


# --- tables, figure panels, formulas, notebook lookups ------------------------------------------------------------

def test_pandas_table_is_cut_to_rows_and_columns():
    frame = pd.DataFrame({"params": [10, 20, 30], "acc": [0.9, 0.8, 0.7], "ms": [1, 2, 3]},
                         index=pd.Index(["a", "b", "c"], name="method"))
    table = tables.from_html(frame.to_html())
    assert table.header == ["method", "params", "acc", "ms"]
    cut = table.select(rows=2, columns=["acc"])
    assert cut.header == ["method", "acc"] and cut.rows == [["a", "0.9"], ["b", "0.8"]]
    assert "+ 1 more rows in the notebook" in cut.to_html(more=1)
    assert table.select(rows=["c", "a"], columns=["ms"]).rows == [["c", "3"], ["a", "1"]]
    with pytest.raises(ValueError, match="no row \\['d'\\]"):
        table.select(rows=["d"])
    with pytest.raises(ValueError, match="no column \\['loss'\\]"):
        table.select(columns=["loss"])


def test_multi_level_index_and_columns_keep_every_value_in_its_column():
    """pandas writes a two-level row index with rowspan and two-level columns with colspan: a row without its
    first-level cell must not shift its values one column to the left."""
    index = pd.MultiIndex.from_product([["sentiment", "topic"], ["random", "pretrained"]], names=["task", "init"])
    columns = pd.MultiIndex.from_product([["acc"], ["test", "held-out"]])
    frame = pd.DataFrame([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]], index=index, columns=columns)
    table = tables.from_html(frame.to_html())
    assert table.header == ["task · init", "acc test", "acc held-out"]
    assert table.rows[1] == ["sentiment · pretrained", "0.3", "0.4"]
    assert table.rows[3] == ["topic · pretrained", "0.7", "0.8"]


def test_charts_draw_a_tables_numbers_at_slide_size():
    from slides.charts import DPI, SIZE_PX, chart_png

    table = tables.Table(["method", "% of base", "acc", "std", "family"],
                         [["full", "100.000", "0.8247", "0.0040", "full"], ["LoRA", "0.324", "0.8193", "0.0075", "lora"]])
    ranks = tables.Table(["r", "acc", "std", "acc (rsLoRA)"], [["1", "0.80", "0.01", "0.79"], ["8", "0.82", "0.01", "0.81"]])
    for png in (chart_png(table, "bar", y="acc", err="std"),
                chart_png(table, "scatter", x="% of base", y="acc", err="std", group="family", log=True),
                chart_png(ranks, "line", y=["acc", "acc (rsLoRA)"], err=["std"], log=True)):
        assert png_size(png) == SIZE_PX and DPI == 100
    with pytest.raises(ValueError, match="no column \\['loss'\\]"):
        chart_png(table, "bar", y="loss")
    with pytest.raises(ValueError, match="'full' is not a number|'n/a' is not a number"):
        chart_png(tables.Table(["m", "acc"], [["a", "n/a"]]), "bar", y="acc")


def test_markdown_table_is_read():
    table = tables.from_markdown("Results:\n\n| method | acc |\n| --- | ---: |\n| **LoRA** | 0.8 |\n")
    assert table.header == ["method", "acc"] and table.rows == [["LoRA", "0.8"]]


def figure_png(panels: int, suptitle: bool) -> bytes:
    fig, axes = plt.subplots(1, panels, figsize=(3.5 * panels, 3), dpi=90, squeeze=False)
    for n, ax in enumerate(axes[0]):
        ax.plot([0, 1], [0, n + 1])
        ax.set_ylabel(f"panel {n + 1}")
    if suptitle:
        fig.suptitle("a title across every panel")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor="white")
    plt.close(fig)
    return buffer.getvalue()


@pytest.mark.parametrize("suptitle", [False, True])
def test_panel_is_cut_along_the_white_gap(suptitle):
    png = figure_png(3, suptitle)
    width, height = png_size(png)
    pieces = [png_size(panel(png, i, 3)) for i in (1, 2, 3)]
    assert all(w < width / 2.5 for w, _ in pieces), pieces
    assert sum(w for w, _ in pieces) > width * 0.8, "the panels together keep most of the figure"
    if suptitle:  # the title across the panels is cut off, not split into pieces
        assert all(h < height - 15 for _, h in pieces), pieces
    with pytest.raises(ValueError, match="panel 4 of 3"):
        panel(png, 4, 3)


def test_a_title_wider_than_its_panel_is_cut_off_not_split():
    """A panel title that runs into the gap would be cut mid-word at the panel's edge: it goes, with the other
    panel's title on the same line, and nothing of either is left at the top of a panel."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3), dpi=90)
    axes[0].set_title("a very long title that runs past the edge of its own panel")
    axes[1].set_title("a short one (with descenders: gy)")
    for ax in axes:
        ax.plot([0, 1], [0, 1])
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor="white")
    plt.close(fig)
    png = buffer.getvalue()
    _, height = png_size(png)
    for index in (1, 2):
        piece = panel(png, index, 2)
        assert png_size(piece)[1] < height - 15, "the title line is gone"


def test_a_figure_without_gaps_cannot_be_cut():
    fig, ax = plt.subplots(figsize=(6, 3), dpi=90)
    ax.imshow([[0, 1] * 20] * 10, aspect="auto", cmap="gray")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    with pytest.raises(ValueError, match="no white gap"):
        panel(buffer.getvalue(), 1, 2)


def test_tex_becomes_mathml_and_failures_are_reported():
    errors: list[str] = []
    text = r"rank $r$, cost \$5, `$code$`, $$\frac{\alpha}{r} BA$$ and $\nosuchcommand$"
    converted = markdown_with_mathml(text, errors)
    assert converted.count("<math") == 2 and 'display="block"' in converted
    assert r"\$5" in converted and "`$code$`" in converted
    assert len(errors) == 1 and "nosuchcommand" in errors[0]


def test_function_names_get_a_thin_space():
    converted = markdown_with_mathml(r"$\beta \log \pi$", [])
    assert '<mi>β</mi><mspace width="0.1667em" /><mi>log</mi><mspace width="0.1667em" /><mi>π</mi>' in converted


def test_a_formula_with_bars_stays_inside_its_table_cell():
    from slides.render import markdown

    rendered = markdown("| method | size |\n| --- | --- |\n| full | $\\lvert\\theta\\rvert$ |", [])
    assert rendered.count("<td>") == 2 and "<math" in rendered


def test_subscripts_drop_and_primes_follow_their_base():
    """h' as a superscript prime is drawn as a tiny mark high above h (the glyph is already raised), and operators
    inside scripts keep their full spacing (x_{<t} reads "x < t"): both are rewritten."""
    converted = markdown_with_mathml(r"$p(x_t \mid x_{<t})$, $h'$ and $x'_i$", [])
    assert converted.count("<msub>") == 3 and "<msup>" not in converted
    assert '<mrow><mi>h</mi><mo lspace="0" rspace="0">′</mo></mrow>' in converted
    assert '<mo lspace="0" rspace="0">&lt;</mo><mi>t</mi>' in converted


def test_notebook_lookup_names_the_problem(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 99 · A title (제목)"),
        nbformat.v4.new_code_cell("print(1)  # one", outputs=[nbformat.v4.new_output("stream", name="stdout",
                                                                                       text="0.123\n")]),
        nbformat.v4.new_code_cell("print(2)  # two")])
    path = tmp_path / "99_x.ipynb"
    nbformat.write(nb, path)
    source = NotebookSource(path)
    assert source.title() == "99 · A title (제목)" and source.text("# one", "text") == "0.123"
    with pytest.raises(ValueError, match="2 cells contain 'print'"):
        source.cell("print")
    with pytest.raises(ValueError, match="no cell contain"):
        source.cell("nothing like this")
    with pytest.raises(ValueError, match="has 0 png output"):
        source.png("# two")
    assert source.unshown_numbers("measured 0.123, invented 0.456") == ["0.456"]


# --- every notebook's outline --------------------------------------------------------------------------------------

def test_every_notebook_has_an_outline_named_after_it():
    outlines = {path.stem for path in OUTLINES}
    notebooks = {path.stem for path in ALL_NOTEBOOKS}
    assert outlines == notebooks, f"missing: {sorted(notebooks - outlines)}, stray: {sorted(outlines - notebooks)}"
    assert (LECTURES / "index.yaml").is_file()


@pytest.mark.parametrize("path", OUTLINES + [LECTURES / "index.yaml"], ids=lambda p: p.stem)
def test_numbers_on_slides_are_numbers_the_notebook_shows(path):
    """A measured-looking number on a slide must appear in its notebook's outputs (the notebooks' own rule)."""
    deck = outline.load(path)
    text = " ".join([deck.subtitle, deck.notes] + [f"{s.title} {s.text} {s.notes}" for s in deck.slides])
    names = [deck.notebook] + [s.visual.notebook for s in deck.slides if s.visual and s.visual.notebook]
    shown = " ".join(NotebookSource(NOTEBOOKS / name).shown_text() for name in dict.fromkeys(names))
    loose = sorted({m.group() for m in MEASURED.finditer(text) if m.group() not in shown})
    assert not loose, f"{path.name}: numbers that the outputs of {', '.join(dict.fromkeys(names))} do not show: {loose}"


def font_characters() -> set[str]:
    """Characters the bundled text fonts draw (Course Gothic, then its fallback Course Symbols)."""
    from fontTools.ttLib import TTFont

    names = ("CourseGothic-Regular.woff", "CourseSymbols-Regular.woff")
    return {chr(cp) for name in names for cp in TTFont(FONTS / name).getBestCmap()}


# --- the build ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def manifest() -> dict[str, dict]:
    """Build every deck into build/slides/ once per test session."""
    return {row["deck"]: row for row in build(OUT, NOTEBOOKS)}


def test_one_deck_per_outline_plus_the_opening_deck(manifest):
    assert sorted(manifest) == sorted(DECKS)
    assert all((OUT / deck).is_file() for deck in DECKS)


@pytest.mark.parametrize("deck", DECKS)
def test_deck_is_self_contained_with_notes_and_its_characters_in_the_fonts(manifest, deck):
    page = (OUT / deck).read_text(encoding="utf-8")
    links = re.findall(r"""<(?:script|link|img|a)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", page)
    remote = [link for link in links if re.match(r"^[a-z][a-z0-9+.-]*://", link, re.IGNORECASE)]
    assert not remote, f"{deck} links outside the build folder: {remote}"
    local = [link.split("#")[0] for link in links if not link.startswith(("data:", "#"))]
    missing = [link for link in local if not (OUT / link).is_file()]
    assert not missing, f"{deck} links files that are not in {OUT}: {missing}"
    row = manifest[deck]
    assert row["slides"] >= MIN_SLIDES[deck_kind(deck)]
    assert not row["math_errors"], "formulas left as TeX: " + "; ".join(row["math_errors"])
    if deck_kind(deck) != "solutions":
        assert row["notes"] >= NOTES_SHARE * row["slides"], f"{deck}: speaker notes on {row['notes']} of {row['slides']}"
    visible = re.sub(r"<math\b.*?</math>|<style\b.*?</style>|<script\b.*?</script>|<[^>]+>", " ", page, flags=re.S)
    outside = sorted({c for c in html.unescape(visible) if not c.isspace()} - font_characters())
    assert not outside, f"{deck}: characters the bundled font lacks (rerun tools/make_slide_fonts.py): {outside}"


# --- a real browser ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session; skip (or fail under COURSE_REQUIRE_BROWSER=1) when none is installed."""
    executable = find_chromium()
    if executable is None:
        message = ("no Chromium found (install Debian's `chromium`, as .ci/run does, or set COURSE_CHROMIUM); "
                   "the decks were built but not opened in a browser")
        if os.environ.get("COURSE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"COURSE_REQUIRE_BROWSER=1 but {message}")
        pytest.skip(message)
    with Browser(executable) as chromium:
        yield chromium


@pytest.mark.parametrize("deck", DECKS)
def test_every_slide_reached_titled_and_inside_the_slide(manifest, browser, deck):
    shots = OUT / "screenshots"
    (shots / (Path(deck).stem + ".png")).unlink(missing_ok=True)
    report = browser.check_deck(OUT / deck, shots)
    assert report.ok, f"{deck}:\n" + "\n".join(report.problems)
    assert report.total == manifest[deck]["slides"] == len(report.slides), "reveal.js counts other slides"
    head = (shots / (Path(deck).stem + ".png")).read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", head[16:24]) == (1280, 720)


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> str:
    """reveal.js, the CSS and the fonts in a folder of their own, for hand-made pages."""
    folder = tmp_path_factory.mktemp("decks")
    copy_assets(folder)
    return (folder / "_assets").as_uri()


def test_s_opens_the_speaker_view_with_the_slides_notes(manifest, browser):
    """Presenters read the notes in reveal's speaker view (S): it must open offline and show this slide's notes."""
    deck = outline.load(LECTURES / "05_lora.yaml")
    expected = deck.slides[2].notes.split()[:6]
    shown = browser.speaker_notes(OUT / "05_lora.html", 3)
    assert shown.split()[:6] == expected, shown[:200]


def bad_deck(tmp_path: Path, assets: str, slides: str, config: str = "navigationMode: 'linear'",
             css: str = "course.css") -> Path:
    page = tmp_path / "bad.html"
    page.write_text(f"""<!DOCTYPE html><html><head><link rel="stylesheet" href="{assets}/reveal/dist/reveal.css">
<link rel="stylesheet" href="{assets}/{css}"></head>
<body><div class="reveal"><div class="slides">{slides}</div></div>
<script src="{assets}/reveal/dist/reveal.js"></script>
<script>Reveal.initialize({{width: 1280, height: 720, margin: 0, center: false, {config}}});</script></body></html>""",
                    encoding="utf-8")
    return page


def frame(title: str, body: str) -> str:
    heading = f'<h2 class="slide-title">{title}</h2>' if title else ""
    return f'<section><div class="frame">{heading}<div class="slide-body">{body}</div></div></section>'


def test_browser_check_fails_on_each_kind_of_bad_slide(assets, browser, tmp_path):
    tall = "<br>".join(["line"] * 40)
    wide = "<pre class='slide-output'>" + "x" * 400 + "</pre>"
    slides = "".join([
        frame("Fine", '<div class="slide-text">ok</div>'),
        frame("", '<div class="slide-text">no title</div>'),
        frame("Empty", '<div class="slide-text"></div>'),
        frame("Too tall", f'<div class="slide-text">{tall}</div>'),
        frame("Too wide", f'<div class="slide-visual">{wide}</div>'),
        frame("Unfinished", '<div class="slide-text">TODO: fill in</div>'),
    ])
    report = browser.check_deck(bad_deck(tmp_path, assets, slides))
    problems = "\n".join(report.problems)
    assert "slide 1" not in problems
    assert "slide 2 ('')" in problems and "no title" in problems
    assert "slide 3 ('Empty'): empty" in problems
    assert re.search(r"slide 4 \('Too tall'\): spills \d+px below", problems)
    assert re.search(r"slide 5 \('Too wide'\): .*(clipped|spills)", problems)
    assert "slide 6 ('Unfinished'): shows TODO" in problems


def test_browser_check_finds_slides_the_arrow_key_skips(assets, browser, tmp_path):
    stack = f"<section>{frame('Top', '<div class=slide-text>a</div>')}{frame('Below', '<div class=slide-text>b</div>')}</section>"
    page = bad_deck(tmp_path, assets, frame("First", "<div class=slide-text>x</div>") + stack, config="")
    report = browser.check_deck(page)
    assert report.total == 3 and report.unreached, "→ in reveal's default mode skips the vertical slide"


def test_browser_check_catches_network_and_console_errors(assets, browser, tmp_path):
    slides = frame("One", '<div class="slide-text">x<img src="https://example.org/f.png"><img src="missing.png"></div>')
    page = bad_deck(tmp_path, assets, slides + '<script>console.error("boom")</script>')
    report = browser.check_deck(page)
    problems = "\n".join(report.problems)
    assert "https://example.org/f.png" in problems and "missing.png" in problems and "boom" in problems


def test_figure_text_below_16_pt_is_a_problem(assets, browser, tmp_path):
    png = base64.b64encode(figure_png(1, False)).decode()
    small = f'<div class="slide-visual visual-figure" style="flex: 0 0 200px"><img class="slide-figure" src="data:image/png;base64,{png}"></div>'
    report = browser.check_deck(bad_deck(tmp_path, assets, frame("Small figure", small)))
    assert any("figure text at" in line for line in report.problems), report.problems


def test_a_deck_without_the_bundled_fonts_is_a_problem(assets, browser, tmp_path):
    page = bad_deck(tmp_path, assets, frame("제목 without the course style", '<div class="slide-text">x</div>'),
                    css="reveal/dist/reveal.css")
    report = browser.check_deck(page)
    assert any("not the bundled Course Gothic" in line for line in report.problems), report.problems
