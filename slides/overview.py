"""The course overview deck, generated from README.md, the syllabus and each notebook's title cell."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from course_lib.syllabus import SYLLABUS, Lesson  # course_lib imports lazily: no torch needed here


TITLE = """# PEFT from scratch

Parameter-efficient fine-tuning (매개변수 효율적 미세 조정), built from first principles in PyTorch and measured
in Jupyter notebooks."""

HOW_TO_PRESENT = """## Presenting these slides

- Open `index.html` (this deck) or any lesson deck from the build folder in a browser — no network needed.
- Keys: **→ / Space** next, **↓** the next part of a section, **Esc** overview, **F** full screen,
  **S** speaker notes in a second window.
- Code longer than a few lines is folded: click **code · N lines** to open it.
- Rebuild after re-running notebooks: `bash course.sh slides`; show the live notebook with `bash course.sh lab`."""


def readme_intro(readme: Path) -> list[str]:
    """The paragraphs of README.md between its title and its first section."""
    if not readme.is_file():
        return []
    text = readme.read_text(encoding="utf-8").split("\n## ", 1)[0]
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    return [p for p in paragraphs if not p.startswith("#")]


def title_cell(notebook: Path) -> str:
    """The source of a notebook's first markdown cell ('' when it has none)."""
    nb = nbformat.read(notebook, as_version=4)
    return next((cell.source for cell in nb.cells if cell.cell_type == "markdown"), "")


def notebook_title(source: str, fallback: str) -> str:
    """The first '# ' heading of a title cell, without the '#'."""
    match = re.search(r"^#\s+(.+)$", source, flags=re.MULTILINE)
    return match.group(1).strip() if match else fallback


def learning_goals(source: str) -> list[str]:
    """The list items under a 'Learning goals' line of a title cell."""
    lines = source.split("\n")
    start = next((i for i, line in enumerate(lines) if "learning goals" in line.lower()), None)
    if start is None:
        return []
    goals: list[str] = []
    for line in lines[start + 1:]:
        if re.match(r"^\s*[-*]\s+", line):
            goals.append(re.sub(r"^\s*[-*]\s+", "", line).strip())
        elif line.startswith("  ") and goals:
            goals[-1] += " " + line.strip()
        elif line.strip():
            break
    return goals


def slide(source: str, slide_type: str = "slide") -> NotebookNode:
    """A markdown cell with a slide type."""
    cell = nbformat.v4.new_markdown_cell(source)
    cell.metadata["slideshow"] = {"slide_type": slide_type}
    return cell


def map_table(lessons: list[Lesson], decks: dict[int, str]) -> str:
    """A markdown table of lessons, each linked to its deck when it was built."""
    rows = ["| # | lesson | seeds |", "| --- | --- | --- |"]
    for item in lessons:
        name = f"[{item.title}]({decks[item.number]})" if item.number in decks else f"{item.title} *(in preparation)*"
        rows.append(f"| {item.number:02d} | {name} | {', '.join(item.seeds)} |")
    return "\n".join(rows)


def overview_notebook(root: Path, notebook_dir: Path, decks: dict[str, str]) -> NotebookNode:
    """The overview deck as a notebook of marked markdown cells; decks maps notebook file name to deck file."""
    by_number = {item.number: decks[item.notebook] for item in SYLLABUS if item.notebook in decks}
    intro = readme_intro(root / "README.md")
    cells = [slide(f"{TITLE}\n\n{len(SYLLABUS)} lessons · offline first · runs on a laptop CPU")]
    if intro:
        cells.append(slide("## What the course is\n\n" + "\n\n".join(intro)))
    half = (len(SYLLABUS) + 1) // 2
    cells.append(slide("## Course map\n\n" + map_table(list(SYLLABUS[:half]), by_number)))
    cells.append(slide("## Course map (continued)\n\n" + map_table(list(SYLLABUS[half:]), by_number), "subslide"))
    for item in SYLLABUS:
        path = notebook_dir / item.notebook
        if item.number not in by_number or not path.is_file():
            continue
        source = title_cell(path)
        goals = learning_goals(source)
        text = f"## {notebook_title(source, item.title)}\n\n"
        text += "\n".join(f"- {goal}" for goal in goals) if goals else item.title
        text += f"\n\n[Open the lesson deck →]({by_number[item.number]}) · notebook `notebooks/{item.notebook}`"
        cells.append(slide(text))
    cells.append(slide(HOW_TO_PRESENT))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["title"] = "PEFT from scratch: course overview"
    return nb
