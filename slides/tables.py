"""Tables for slides: a notebook's pandas HTML or Markdown table cut to the rows and columns a slide can show."""

from __future__ import annotations

import html
from dataclasses import dataclass
from html.parser import HTMLParser


@dataclass
class Table:
    """A header row and body rows of plain text cells (the first column is the row label)."""

    header: list[str]
    rows: list[list[str]]

    def select(self, rows: int | list[str] | None = None, columns: list[str] | None = None) -> "Table":
        """The first `rows` rows (or the rows with these labels, in this order) and the label column plus the named
        columns, in the order given."""
        if isinstance(rows, int) and rows < 1:
            raise ValueError(f"rows={rows}: a slide table needs at least one row")
        keep = list(range(len(self.header)))
        if columns:
            unknown = [name for name in columns if name not in self.header[1:]]
            if unknown:
                raise ValueError(f"no column {unknown} in this table; its columns are {self.header[1:]}")
            keep = [0] + [self.header.index(name, 1) for name in columns]
        if isinstance(rows, list):
            labels = [row[0] for row in self.rows]
            unknown = [label for label in rows if label not in labels]
            if unknown:
                raise ValueError(f"no row {unknown} in this table; its rows are {labels}")
            body = [self.rows[labels.index(label)] for label in rows]
        else:
            body = self.rows if rows is None else self.rows[:rows]
        return Table([self.header[i] for i in keep], [[row[i] if i < len(row) else "" for i in keep] for row in body])

    def to_html(self, more: int = 0) -> str:
        """The table as HTML; `more` > 0 adds a last line saying how many rows the notebook has beyond these."""
        cell = lambda tag, text: f"<{tag}>{html.escape(text)}</{tag}>"  # noqa: E731
        head = "<tr>" + "".join(cell("th", text) for text in self.header) + "</tr>"
        body = "".join("<tr>" + cell("th", row[0]) + "".join(cell("td", text) for text in row[1:]) + "</tr>"
                       for row in self.rows)
        note = (f'<p class="table-more">+ {more} more rows in the notebook</p>' if more else "")
        return f'<table class="slide-table"><thead>{head}</thead><tbody>{body}</tbody></table>{note}'


class _Cells(HTMLParser):
    """Collects the text of every th/td cell, row by row, noting whether a row is in the table head."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[bool, list[str]]] = []
        self.in_head = self.in_cell = self.in_style = False
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "thead":
            self.in_head = True
        elif tag == "tr":
            self.rows.append((self.in_head, []))
        elif tag in ("th", "td"):
            self.in_cell, self.text = True, ""
        elif tag == "style":
            self.in_style = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "thead":
            self.in_head = False
        elif tag in ("th", "td") and self.rows:
            self.rows[-1][1].append(" ".join(self.text.split()))
            self.in_cell = False
        elif tag == "style":
            self.in_style = False

    def handle_data(self, data: str) -> None:
        if self.in_cell and not self.in_style:
            self.text += data


def from_html(source: str) -> Table:
    """A pandas DataFrame's HTML as a Table (an index-name header row is folded into the first header row)."""
    parser = _Cells()
    parser.feed(source)
    head = [cells for in_head, cells in parser.rows if in_head]
    body = [cells for in_head, cells in parser.rows if not in_head and cells]
    if not head and body:
        head, body = [body[0]], body[1:]
    if not head:
        raise ValueError("no table in this output")
    header = head[0]
    for extra in head[1:]:  # pandas writes the index name on a second header row
        if extra and extra[0] and not any(extra[1:]):
            header = [extra[0]] + header[1:]
        else:
            header = [f"{a} {b}".strip() for a, b in zip(header, extra)]
    return Table(header, body)


def from_markdown(source: str) -> Table:
    """A Markdown pipe table (the first one in the text) as a Table."""
    lines = [line.strip() for line in source.splitlines()]
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if start is None:
        raise ValueError("no Markdown table in this output")
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if not all(set(cell) <= set("-: ") for cell in cells):
            rows.append([cell.replace("**", "").replace("`", "") for cell in cells])
    return Table(rows[0], rows[1:])
