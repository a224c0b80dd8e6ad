"""Instructor slides: the cell-marking rules, the build (one deck per notebook, offline assets only), and every deck
opened from disk by a real headless Chromium with the network disabled.

The browser tests skip when no Chromium is installed, unless COURSE_REQUIRE_BROWSER=1 (set by .ci/run, which
installs Debian's chromium): then a missing browser is a failure.
"""

from __future__ import annotations

import os
import re
import struct
import sys
import warnings
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from slides.browser import Chromium, find_chromium  # noqa: E402
from slides.build import OVERVIEW, build, find_notebooks  # noqa: E402
from slides.mathml import markdown_with_mathml  # noqa: E402
from slides.rules import mark_notebook, split_markdown  # noqa: E402

OUT = ROOT / "build" / "slides"
NOTEBOOKS = ROOT / "notebooks"
MIN_SLIDES = 5            # lesson decks and the overview
MIN_SOLUTION_SLIDES = 3   # a solutions notebook has a title and a section per exercise
DECKS = [OVERVIEW] + [notebook.stem + ".html" for notebook in find_notebooks(NOTEBOOKS)]


def min_slides(deck: str) -> int:
    """The fewest slides a deck may have."""
    return MIN_SOLUTION_SLIDES if deck.endswith("_solutions.html") else MIN_SLIDES


# --- the rules, on small hand-made notebooks ---------------------------------------------------------------------

def slide_types(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """(slide type, first line of source) of every cell of a marked notebook."""
    return [(cell.metadata["slideshow"]["slide_type"], cell.source.split("\n")[0]) for cell in nb.cells]


def small_notebook() -> nbformat.NotebookNode:
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    widget = nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "x"}, "text/plain": "0%|   | 0/10"})
    stdout = nbformat.v4.new_output("stream", name="stdout", text="".join(f"line {i}\n" for i in range(40)))
    stderr = nbformat.v4.new_output("stream", name="stderr", text="a warning\n")
    cells = [
        md("# 99 · Title (제목)\n\nOne paragraph.\n\n**Learning goals**\n- one\n- two"),
        code("import sys  # the setup cell", outputs=[nbformat.v4.new_output("stream", name="stdout", text="v1\n")]),
        md("## 1. A section\n\nText with $W_0 x$.\n\n### A sub-part\n\nMore text."),
        code("# NBVAL_CHECK_OUTPUT\nprint(1)", outputs=[widget, stdout, stderr]),
        code("\n".join(f"x{i} = {i}" for i in range(30))),
        md("Speaker notes: say this out loud."),
        md("Forced to its own slide."),
        code("print('hidden')", outputs=[]),
    ]
    cells[6].metadata["slideshow"] = {"slide_type": "slide"}
    cells[7].metadata["tags"] = ["skip"]
    return nbformat.v4.new_notebook(cells=cells)


def test_rules_split_headings_into_slides_and_subslides():
    marked = mark_notebook(small_notebook())
    types = slide_types(marked)
    assert types[0] == ("slide", "# 99 · Title (제목)")
    assert ("slide", "## 1. A section") in types
    assert ("subslide", "### A sub-part") in types
    assert ("slide", "Forced to its own slide.") in types                     # explicit metadata wins
    assert ("notes", "say this out loud.") in types                          # "Speaker notes:" marker
    assert not any("import sys" in source or "hidden" in source for _, source in types)  # setup cell, tag skip


def test_rules_filter_outputs_and_collapse_long_code():
    marked = mark_notebook(small_notebook())
    codes = [cell for cell in marked.cells if cell.cell_type == "code"]
    shown = [cell for cell in codes if cell.metadata["course_slides"]["input"] == "show"]
    assert [cell.source for cell in shown] == ["print(1)"]                   # NBVAL marker line removed
    assert any(cell.metadata["course_slides"]["input"] == "collapse" and cell.metadata["course_slides"]["lines"] == 30
               for cell in codes)
    outputs = [out for cell in codes for out in cell.outputs]
    assert [out.output_type for out in outputs] == ["stream"]                # widget and stderr dropped
    assert outputs[0].name == "stdout" and "more lines" in outputs[0].text


def test_split_markdown_keeps_math_fences_and_lists_whole():
    source = "## Head\nIntro.\n\n$$\na = b\n\nc = d\n$$\n\n```python\nx = 1\n\ny = 2\n```\n\n- item\n\n  more"
    assert split_markdown(source) == ["## Head", "Intro.", "$$\na = b\n\nc = d\n$$", "```python\nx = 1\n\ny = 2\n```",
                                      "- item\n\n  more"]


def test_tex_becomes_mathml_and_failures_are_reported():
    errors: list[str] = []
    html = markdown_with_mathml(r"rank $r$, cost \$5, `$code$`, $$\frac{\alpha}{r} BA$$ and $\nosuchcommand$", errors)
    assert html.count("<math") == 2 and 'display="block"' in html
    assert r"\$5" in html and "`$code$`" in html
    assert len(errors) == 1 and "nosuchcommand" in errors[0]


def test_rules_reject_an_unknown_slide_type():
    nb = small_notebook()
    nb.cells[2].metadata["slideshow"] = {"slide_type": "banana"}
    with pytest.raises(ValueError, match="allowed"):
        mark_notebook(nb)


# --- the build ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def manifest() -> dict[str, dict]:
    """Build every deck into build/slides/ once per test session."""
    return {row["deck"]: row for row in build(OUT, NOTEBOOKS)}


def test_one_deck_per_notebook_plus_overview(manifest):
    assert sorted(manifest) == sorted(DECKS)
    assert all((OUT / deck).is_file() for deck in DECKS)


@pytest.mark.parametrize("deck", DECKS)
def test_deck_is_self_contained(manifest, deck):
    html = (OUT / deck).read_text(encoding="utf-8")
    links = re.findall(r"""<(?:script|link|img)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", html)
    assert links, "the deck loads no script or style sheet at all"
    remote = [link for link in links if re.match(r"^[a-z][a-z0-9+.-]*://", link, re.IGNORECASE)]
    assert not remote, f"{deck} links outside the build folder: {remote}"
    local = [link.split("#")[0].split("?")[0] for link in links if not link.startswith("data:")]
    missing = [link for link in local if not (OUT / link).is_file()]
    assert not missing, f"{deck} links files that are not in {OUT}: {missing}"
    assert manifest[deck]["slides"] >= min_slides(deck)
    assert not manifest[deck]["math_errors"], "formulas left as TeX: " + "; ".join(manifest[deck]["math_errors"])


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
    with Chromium(executable) as chromium:
        yield chromium


@pytest.mark.parametrize("deck", DECKS)
def test_deck_in_headless_chromium(manifest, browser, deck):
    screenshot = OUT / "screenshots" / (Path(deck).stem + ".png")
    screenshot.unlink(missing_ok=True)
    report = browser.check_deck(OUT / deck, screenshot)
    assert report.ok, f"{deck}: " + "\n".join(report.failed + report.errors)
    assert report.slides >= min_slides(deck), f"{deck} has {report.slides} slides"
    assert report.slides == manifest[deck]["slides"], "reveal.js counts other slides than the build marked"
    head = screenshot.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", head[16:24]) == (1280, 720)
    assert screenshot.stat().st_size > 5000, "the title-slide screenshot looks blank"
    if report.overflow:  # not an error (such slides scroll), but a hint to mark cells or split the section
        warnings.warn(f"{deck}: slides taller than the screen: {', '.join(report.overflow)}", stacklevel=1)


def test_browser_check_catches_network_and_console_errors(manifest, browser, tmp_path):
    reveal = (OUT / "_assets" / "reveal").as_uri()
    page = tmp_path / "bad.html"
    page.write_text(f"""<!DOCTYPE html><html><head><link rel="stylesheet" href="{reveal}/dist/reveal.css"></head>
<body><div class="reveal"><div class="slides"><section>one</section><section>two</section></div></div>
<img src="https://example.org/figure.png"><img src="missing.png">
<script src="{reveal}/dist/reveal.js"></script>
<script>console.error("boom"); Reveal.initialize();</script></body></html>""", encoding="utf-8")
    report = browser.check_deck(page)
    assert report.slides == 2
    assert any("https://example.org/figure.png" in line for line in report.failed)
    assert any("missing.png" in line for line in report.failed)
    assert any("boom" in line for line in report.errors)
