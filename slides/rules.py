"""Cell-marking rules: turn an executed notebook into a copy whose cells carry reveal.js slide types.

The rules (documented in slides/README.md):

* Explicit marks win: a cell with ``metadata.slideshow.slide_type`` or a tag ``slide``, ``subslide``, ``fragment``,
  ``skip`` or ``notes`` keeps that type (tag ``remove-cell`` = skip). A notebook with ``metadata.slides.auto = false``
  uses only explicit marks.
* Markdown cells are split at headings and blank lines: ``#``/``##`` start a slide, ``###`` a sub-slide, a line that
  is only bold text (``**Learning goals**``) starts a sub-slide when it does not fit. A markdown cell that starts
  with ``Speaker notes:`` becomes speaker notes.
* Code: the first code cell (the setup cell) is skipped; code of at most ``CODE_SHOW_MAX_LINES`` lines is shown,
  longer code and the code of cells that draw a figure or a table is collapsed (a click opens it); in solution
  decks code of up to ``SOLUTION_SHOW_MAX_LINES`` lines stays open, figure or not; tags
  ``hide-input``, ``collapse-input``, ``show-input`` and ``remove-output`` override that. Outputs keep figures,
  tables and stdout (shortened to ``OUTPUT_MAX_LINES``); stderr, progress bars and widgets are dropped.
* Content flows onto a slide until an estimate of its height (in lines of body text) passes ``BUDGET``; the rest
  continues on a sub-slide headed by the section title.
"""

from __future__ import annotations

import copy
import html
import re
from dataclasses import dataclass

import nbformat
from nbformat import NotebookNode

from slides.layout import (BOLD_LINE, FENCE, HEADING, LINE_PX, LIST_ITEM, fit_image, input_weight, markdown_weight,
                           output_text, output_weight, png_size)

SLIDE_TYPES = ("slide", "subslide", "fragment", "skip", "notes", "-")
TAG_TYPES = {"slide": "slide", "subslide": "subslide", "fragment": "fragment", "skip": "skip", "notes": "notes",
             "remove-cell": "skip"}

BUDGET = 16.5              # lines of body text (40px each) that fit on a 720px slide, heading included
TITLE_BUDGET = 9.0         # the title slide stays short: title and the first paragraph
CODE_SHOW_MAX_LINES = 10   # longer code is collapsed (lessons)
SOLUTION_SHOW_MAX_LINES = 16  # solutions: the code is the answer, so more of it stays open
OUTPUT_MAX_LINES = 14      # longer stdout is cut with a "... N more lines" line
IMAGE_MIN_PX = 320         # a figure may shrink to this height to stay on the slide before it

NOTES_MARKER = re.compile(r"^\s*(\*\*)?speaker notes(:\*\*|\*\*:|:)\s*", re.IGNORECASE)
NBVAL_LINE = re.compile(r"^\s*#\s*NBVAL_\w+\s*$")
OBJECT_REPR = re.compile(r"^\s*\[?<[\w. ]+(object at 0x[0-9a-f]+|size \d+x\d+[^>]*)>\]?\s*$|^\s*Text\(.*\)\s*$")


@dataclass(frozen=True)
class CodePolicy:
    """How much code a deck shows: lessons fold plotting code, solutions show their (short) answers."""

    show_max_lines: int = CODE_SHOW_MAX_LINES
    collapse_drawing: bool = True


LESSON = CodePolicy()
SOLUTIONS = CodePolicy(show_max_lines=SOLUTION_SHOW_MAX_LINES, collapse_drawing=False)


@dataclass
class Piece:
    """One cell of the marked notebook, with its estimated height on a slide."""

    cell: NotebookNode
    weight: float
    kind: str = "content"   # heading | subhead | content | notes | skip | explicit
    level: int = 0
    title: str = ""
    slide_type: str = "-"
    image: NotebookNode | None = None   # the PNG output of a figure piece, which pack() may shrink


def explicit_slide_type(cell: NotebookNode) -> str | None:
    """The slide type the author set on a cell (metadata or tag), or None when the rules decide."""
    slide_type = cell.get("metadata", {}).get("slideshow", {}).get("slide_type")
    if slide_type:
        if slide_type not in SLIDE_TYPES:
            raise ValueError(f"Unknown slideshow.slide_type {slide_type!r}; allowed: {', '.join(SLIDE_TYPES)}.")
        return slide_type
    for tag in cell.get("metadata", {}).get("tags", []):
        if tag in TAG_TYPES:
            return TAG_TYPES[tag]
    return None


def split_markdown(source: str) -> list[str]:
    """Split markdown into blocks at headings and blank lines, keeping code fences, $$ math and lists whole."""
    blocks: list[str] = []
    current: list[str] = []
    fence: str | None = None
    in_math = False

    def flush() -> None:
        text = "\n".join(current).strip("\n")
        if text.strip():
            blocks.append(text)
        current.clear()

    for line in source.splitlines():
        stripped = line.strip()
        if fence:
            current.append(line)
            if stripped.startswith(fence):
                fence = None
            continue
        if in_math:
            current.append(line)
            if "$$" in stripped:
                in_math = False
            continue
        fence_match = FENCE.match(stripped)
        if fence_match:
            fence = fence_match.group(1)
            current.append(line)
            continue
        if stripped.count("$$") % 2 == 1:
            in_math = True
            current.append(line)
            continue
        if HEADING.match(line) or (not current and BOLD_LINE.match(stripped)):
            flush()
            blocks.append(stripped)
            continue
        if not stripped:
            flush()
            continue
        if not current and line[:1] in (" ", "\t") and blocks and LIST_ITEM.match(blocks[-1]):
            current.extend(blocks.pop().split("\n") + [""])  # an indented paragraph that continues a list item
        current.append(line)
    flush()
    return blocks


def shorten(text: str, max_lines: int = OUTPUT_MAX_LINES) -> str:
    """Keep progress-bar lines' final state and cut long text to max_lines."""
    lines = [line.rsplit("\r", 1)[-1] for line in text.rstrip("\n").split("\n")]
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [f"... ({len(lines) - max_lines + 1} more lines)"]
    return "\n".join(lines) + "\n"


def visible_outputs(outputs: list[NotebookNode]) -> list[NotebookNode]:
    """Outputs worth a slide: figures, tables, stdout (merged, shortened) and errors; no widgets or stderr."""
    kept: list[NotebookNode] = []
    for output in outputs:
        kind = output.output_type
        if kind == "stream":
            if output.get("name") != "stdout":
                continue
            if kept and kept[-1].output_type == "stream":
                merged = output_text(kept[-1]) + output_text(output)
                kept[-1] = nbformat.v4.new_output("stream", name="stdout", text=merged)
            else:
                kept.append(nbformat.v4.new_output("stream", name="stdout", text=output_text(output)))
            continue
        if kind == "error":
            kept.append(output)
            continue
        data = output.get("data", {})
        if any(key.startswith("application/vnd.jupyter.widget") for key in data):
            continue
        if not any(key.startswith(("image/", "text/html", "text/markdown", "text/latex")) for key in data):
            if not output_text(output).strip() or OBJECT_REPR.match(output_text(output)):
                continue
        kept.append(output)
    for output in kept:
        if output.output_type == "stream":
            output.text = shorten(output.text)
    return kept


def code_cell(source: str, outputs: list[NotebookNode], input_mode: str, lines: int) -> NotebookNode:
    """A code cell for the marked notebook; input_mode (show | collapse | hide) is read by the template."""
    cell = nbformat.v4.new_code_cell(source=source, outputs=outputs)
    cell.metadata["course_slides"] = {"input": input_mode, "lines": lines}
    return cell


def input_mode(cell: NotebookNode, lines: list[str], outputs: list[NotebookNode], policy: CodePolicy = LESSON) -> str:
    """Show, collapse or hide a code cell's input, by tag or by rule."""
    tags = set(cell.get("metadata", {}).get("tags", []))
    if tags & {"hide-input", "remove-input"} or not lines:
        return "hide"
    if "collapse-input" in tags:
        return "collapse"
    if "show-input" in tags:
        return "show"
    draws = any(key.startswith(("image/", "text/html")) for out in outputs for key in out.get("data", {}))
    return "collapse" if (draws and policy.collapse_drawing) or len(lines) > policy.show_max_lines else "show"


def prepared_code(cell: NotebookNode, policy: CodePolicy = LESSON) -> tuple[list[str], list[NotebookNode], str]:
    """A code cell's input lines (NBVAL markers removed), visible outputs and input mode."""
    tags = set(cell.get("metadata", {}).get("tags", []))
    lines = [line for line in cell.source.split("\n") if not NBVAL_LINE.match(line)]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    outputs = [] if tags & {"remove-output", "hide-output"} else visible_outputs(cell.get("outputs", []))
    return lines, outputs, input_mode(cell, lines, outputs, policy)


def code_pieces(cell: NotebookNode, policy: CodePolicy = LESSON) -> list[Piece]:
    """A code cell as pieces: its input (shown or collapsed), then one piece per output."""
    lines, outputs, mode = prepared_code(cell, policy)
    pieces = []
    if mode != "hide":
        pieces.append(Piece(code_cell("\n".join(lines), [], mode, len(lines)), input_weight(lines, mode)))
    for output in outputs:
        image = output if png_size(output.get("data", {}).get("image/png", "")) else None
        pieces.append(Piece(code_cell("", [output], "hide", 0), output_weight(output), image=image))
    return pieces


def explicit_piece(cell: NotebookNode, slide_type: str, policy: CodePolicy = LESSON) -> Piece:
    """A cell the author marked, kept whole (outputs still filtered) with the author's slide type."""
    if cell.cell_type == "markdown":
        weight = sum(markdown_weight(block) for block in split_markdown(cell.source))
        return Piece(nbformat.v4.new_markdown_cell(cell.source), weight, kind="explicit", slide_type=slide_type)
    lines, outputs, mode = prepared_code(cell, policy)
    weight = input_weight(lines, mode) + sum(output_weight(out) for out in outputs)
    return Piece(code_cell("\n".join(lines), outputs, mode, len(lines)), weight, kind="explicit",
                 slide_type=slide_type)


def markdown_pieces(cell: NotebookNode) -> list[Piece]:
    """A markdown cell as pieces: headings, bold sub-heads, notes and content blocks."""
    source = cell.source
    if NOTES_MARKER.match(source) or "notes" in cell.get("metadata", {}).get("tags", []):
        notes = nbformat.v4.new_markdown_cell(NOTES_MARKER.sub("", source, count=1))
        return [Piece(notes, 0.0, kind="notes")]
    pieces = []
    for block in split_markdown(source):
        piece = Piece(nbformat.v4.new_markdown_cell(block), markdown_weight(block))
        heading = HEADING.match(block)
        if heading:
            piece.kind, piece.level, piece.title = "heading", len(heading.group(1)), heading.group(2)
        elif BOLD_LINE.match(block):
            piece.kind, piece.weight = "subhead", 1.3
        pieces.append(piece)
    return pieces


def continued_cell(title: str) -> NotebookNode:
    """The small header of a continuation sub-slide."""
    text = html.escape(title)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return nbformat.v4.new_markdown_cell(f'<p class="slide-continued">{text} (continued)</p>')


def set_slide_type(cell: NotebookNode, slide_type: str) -> NotebookNode:
    """Write a slide type into the cell's slideshow metadata."""
    cell.metadata.setdefault("slideshow", {})["slide_type"] = slide_type
    return cell


def pack(pieces: list[Piece]) -> list[NotebookNode]:
    """Give every piece a slide type: headings open slides, content flows until the height budget is used."""
    cells: list[NotebookNode] = []
    used, budget, section, has_content, started = 0.0, TITLE_BUDGET, "", False, False
    for index, piece in enumerate(pieces):
        follower = next((p for p in pieces[index + 1:] if p.kind in ("content", "subhead")), None)
        if piece.kind == "explicit":
            slide_type = piece.slide_type
            if slide_type in ("slide", "subslide"):
                used, budget, has_content = piece.weight, BUDGET, False
            elif slide_type in ("-", "fragment"):
                used, has_content = used + piece.weight, True
        elif piece.kind in ("notes", "skip"):
            slide_type = piece.kind
        elif piece.kind == "heading" and (piece.level <= 2 or has_content or not started):
            slide_type = "slide" if piece.level <= 2 or not started else "subslide"
            if piece.level <= 2:
                section = piece.title
            used, has_content = piece.weight, False
            budget = TITLE_BUDGET if not started else BUDGET
        else:
            keep_with = follower.weight if piece.kind in ("heading", "subhead") and follower else 0.0
            if not started:
                slide_type, used = "slide", 0.0
            elif (has_content and piece.image is not None and used + piece.weight > budget
                  and (budget - used - 0.4) * LINE_PX >= IMAGE_MIN_PX):
                height = fit_image(piece.image, (budget - used - 0.4) * LINE_PX)  # shrink to stay on this slide
                piece.weight = height / LINE_PX + 0.4
                slide_type = "-"
            elif has_content and used + piece.weight + keep_with > budget:
                if section:
                    cells.append(set_slide_type(continued_cell(section), "subslide"))
                    slide_type, used = "-", 1.0
                else:
                    slide_type, used = "subslide", 0.0
                budget = BUDGET
            else:
                slide_type = "-"
            used += piece.weight
            has_content = True
        started = started or slide_type not in ("notes", "skip")
        cells.append(set_slide_type(piece.cell, slide_type))
    return cells


def notebook_pieces(nb: NotebookNode, policy: CodePolicy = LESSON) -> list[Piece]:
    """Every cell of a notebook as pieces, by the rules above."""
    pieces: list[Piece] = []
    auto = nb.metadata.get("slides", {}).get("auto", True)
    seen_code = False
    for cell in nb.cells:
        explicit = explicit_slide_type(cell)
        is_first_code = cell.cell_type == "code" and not seen_code
        seen_code = seen_code or cell.cell_type == "code"
        if cell.cell_type == "raw":
            continue
        if explicit is None and not auto:
            explicit = "-"
        if explicit == "skip":
            continue
        if explicit is not None:
            pieces.append(explicit_piece(cell, explicit, policy))
        elif cell.cell_type == "markdown":
            pieces.extend(markdown_pieces(cell))
        elif not is_first_code:
            pieces.extend(code_pieces(cell, policy))
    return pieces


def source_cell(label: str) -> NotebookNode:
    """The title slide's small line naming the course and the notebook."""
    return set_slide_type(nbformat.v4.new_markdown_cell(f'<p class="deck-source">{html.escape(label)}</p>'), "-")


def mark_notebook(nb: NotebookNode, source_label: str | None = None, policy: CodePolicy = LESSON) -> NotebookNode:
    """A copy of an executed notebook whose cells carry slideshow metadata, ready for nbconvert's slides.

    source_label, when given, is a small line added to the title slide (e.g. the notebook's path)."""
    marked = copy.deepcopy(nb)
    marked.metadata.pop("widgets", None)
    marked.cells = pack(notebook_pieces(nb, policy))
    if source_label:
        types = [cell.metadata["slideshow"]["slide_type"] for cell in marked.cells]
        second = next((i for i, t in enumerate(types) if t in ("slide", "subslide") and i > 0), len(types))
        marked.cells.insert(second, source_cell(source_label))
    if not any(c.metadata["slideshow"]["slide_type"] not in ("skip", "notes") for c in marked.cells):
        raise ValueError("The notebook has no visible cell to put on a slide.")
    return marked
