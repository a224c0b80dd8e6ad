"""The opening deck (index.html): the course title, the slides of slides/lectures/index.yaml (why PEFT, what
students will be able to do, prerequisites, the schedule), the course map linking every lesson deck, and how to
present."""

from __future__ import annotations

import html

from course_lib.syllabus import SYLLABUS, Lesson  # course_lib imports lazily: no torch needed here
from slides.outline import Outline
from slides.render import Sources, deck_html, inline, markdown, slide_html

TITLE = "PEFT from scratch · 매개변수 효율적 미세 조정"
MAP_SPLIT = 7   # lessons per course-map slide

HOW_TO_PRESENT = """- **→ / Space** next slide (every slide, in order) · **←** back · **Esc** all slides
- **S** speaker view: notes, next slide, timer · **F** full screen
- Rebuild after re-running notebooks: `bash course.sh slides`"""

HOW_TO_PRESENT_NOTES = """The decks open from disk with no network: fonts, reveal.js and figures are in the build
folder. Each lesson deck's title slide links back here. Every number on a slide comes from the executed notebook;
rebuild the decks whenever the notebooks are re-run."""


def map_table(lessons: list[Lesson], decks: set[str]) -> str:
    """An HTML table of lessons, each linked to its deck and its solutions deck when built."""
    rows = []
    for item in lessons:
        stem = item.notebook.removesuffix(".ipynb")
        title = html.escape(item.title)
        lesson = f'<a href="{stem}.html">{title}</a>' if f"{stem}.html" in decks else title
        solutions = f'<a href="{stem}_solutions.html">solutions</a>' if f"{stem}_solutions.html" in decks else ""
        rows.append(f"<tr><th>{item.number:02d}</th><td class=\"lesson\">{lesson}</td><td>{solutions}</td></tr>")
    return ('<table class="slide-table course-map"><thead><tr><th>#</th><th class="lesson">lesson</th>'
            f'<th>exercises</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def map_slides(decks: set[str]) -> list[dict]:
    """The course map, MAP_SPLIT lessons a slide."""
    parts = [list(SYLLABUS[i:i + MAP_SPLIT]) for i in range(0, len(SYLLABUS), MAP_SPLIT)]
    heads = ["Course map: from a pretrained transformer to LoRA",
             "Course map: LoRA's relatives, quantization, instructions, preferences"]
    notes = ["<p>Click a lesson to open its deck; each deck links back here.</p>"] * len(parts)
    return [{"title": html.escape(heads[min(n, len(heads) - 1)]), "text": "", "visual": map_table(part, decks),
             "visual_kind": "table", "notes": notes[n], "layout": "stack"} for n, part in enumerate(parts)]


def overview_html(outline: Outline, sources: Sources, decks: list[str], assets: str,
                  math_errors: list[str]) -> tuple[str, int]:
    """The opening deck's page and its slide count."""
    title_slide = {"title": inline(TITLE, math_errors),
                   "subtitle": inline(outline.subtitle, math_errors) if outline.subtitle else "",
                   "source": f"{len(SYLLABUS)} lessons · offline first · runs on a laptop CPU",
                   "notes": markdown(outline.notes, math_errors)}
    slides = [slide_html(sources, outline.notebook, slide, math_errors) for slide in outline.slides]
    slides += map_slides(set(decks))
    slides.append({"title": "Presenting these decks", "text": markdown(HOW_TO_PRESENT, math_errors), "visual": "",
                   "visual_kind": "", "notes": markdown(HOW_TO_PRESENT_NOTES, math_errors), "layout": "stack"})
    return deck_html("PEFT from scratch: course overview", title_slide, slides, assets, None), 1 + len(slides)
