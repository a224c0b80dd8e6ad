"""What a lecture outline takes from its executed notebook: figures, tables, printed results and code, found by a
piece of the cell's source so that the outline reads as a list of the notebook's own cells."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from slides import tables

MEASURED = re.compile(r"(?<![\w.$^{])\d+\.\d{2,}(?!\d)")  # the notebooks' rule: numbers that look measured
NBVAL_LINE = re.compile(r"^\s*#\s*NBVAL_\w+\s*$")


def joined(value: str | list[str]) -> str:
    """A notebook field that may be stored as a list of lines."""
    return "".join(value) if isinstance(value, list) else (value or "")


class NotebookSource:
    """An executed notebook, read once; every lookup names the notebook and the cell in its errors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.nb = nbformat.read(path, as_version=4)

    def cell(self, needle: str) -> NotebookNode:
        """The one cell whose source contains `needle`."""
        found = [cell for cell in self.nb.cells if needle in cell.source]
        if len(found) != 1:
            how = "no cell" if not found else f"{len(found)} cells"
            raise ValueError(f"{self.path.name}: {how} contain {needle!r}; use a piece of source unique to one cell")
        return found[0]

    def outputs(self, needle: str, kind: str) -> list[NotebookNode]:
        """A code cell's outputs of one kind: png, table (HTML or Markdown table), markdown, or text (stdout)."""
        cell = self.cell(needle)
        if cell.cell_type != "code":
            raise ValueError(f"{self.path.name}: the cell with {needle!r} is Markdown; point at a code cell")
        picked = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if kind == "png" and "image/png" in data:
                picked.append(output)
            elif kind == "table" and ("<table" in joined(data.get("text/html", "")) or
                                      "\n|" in "\n" + joined(data.get("text/markdown", ""))):
                picked.append(output)
            elif kind == "markdown" and "text/markdown" in data:
                picked.append(output)
            elif kind == "text" and output.output_type == "stream" and output.get("name") == "stdout":
                picked.append(output)
        return picked

    def pick(self, needle: str, kind: str, index: int) -> NotebookNode:
        """Output number `index` (0-based) of a kind, or an error naming how many the cell has."""
        found = self.outputs(needle, kind)
        if not 0 <= index < len(found):
            raise ValueError(f"{self.path.name}: the cell with {needle!r} has {len(found)} {kind} output(s); "
                             f"index {index} is out of range")
        return found[index]

    def png(self, needle: str, index: int = 0) -> bytes:
        """A figure, as PNG bytes."""
        return base64.b64decode(joined(self.pick(needle, "png", index).data["image/png"]))

    def table(self, needle: str, index: int = 0) -> tables.Table:
        """A table output (pandas HTML or a Markdown table)."""
        data = self.pick(needle, "table", index).data
        html = joined(data.get("text/html", ""))
        return tables.from_html(html) if "<table" in html else tables.from_markdown(joined(data["text/markdown"]))

    def text(self, needle: str, kind: str, index: int = 0) -> str:
        """Printed text (kind "text": stdout) or generated Markdown (kind "markdown")."""
        output = self.pick(needle, kind, index)
        text = joined(output.text) if kind == "text" else joined(output.data["text/markdown"])
        return "\n".join(line.rsplit("\r", 1)[-1] for line in text.rstrip("\n").split("\n"))

    def code(self, needle: str) -> str:
        """A cell's code without nbval markers and blank edges."""
        lines = [line for line in self.cell(needle).source.split("\n") if not NBVAL_LINE.match(line)]
        return "\n".join(lines).strip("\n")

    def title(self) -> str:
        """The notebook's '# ' title."""
        for cell in self.nb.cells:
            match = re.search(r"^#\s+(.+)$", cell.source, flags=re.M) if cell.cell_type == "markdown" else None
            if match:
                return match.group(1).strip()
        raise ValueError(f"{self.path.name} has no '# ' title")

    def shown_text(self) -> str:
        """Every text the notebook's outputs show (where a number on a slide must come from)."""
        parts = []
        for cell in self.nb.cells:
            for output in cell.get("outputs", []):
                parts.append(joined(output.get("text", "")))
                parts += [joined(v) for k, v in output.get("data", {}).items() if k.startswith("text/")]
        return "\n".join(parts)

    def unshown_numbers(self, text: str) -> list[str]:
        """Measured-looking numbers in `text` that no output of the notebook shows."""
        shown = self.shown_text()
        return [m.group() for m in MEASURED.finditer(text) if m.group() not in shown]
