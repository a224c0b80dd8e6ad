"""Tables for slides: a notebook's pandas HTML or Markdown table cut to the rows and columns a slide can show."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from html.parser import HTMLParser


@dataclass
class Table:
    """A header row and body rows of plain text cells (the first column is the row label)."""

    header: list[str]
    rows: list[list[str]]

    def index(self, name: str) -> int:
        """The position of a named column (not the label column), or an error listing the columns."""
        if name not in self.header[1:]:
            raise ValueError(f"no column {[name]} in this table; its columns are {self.header[1:]}")
        return self.header.index(name, 1)

    def select(self, rows: int | Sequence[str] | None = None, columns: Sequence[str] | None = None) -> "Table":
        """The first `rows` rows (or the rows with these labels, in this order) and the label column plus the named
        columns, in the order given."""
        if isinstance(rows, int) and rows < 1:
            raise ValueError(f"rows={rows}: a slide table needs at least one row")
        keep = [0] + [self.index(name) for name in columns] if columns else list(range(len(self.header)))
        if rows is None or isinstance(rows, int):
            body = self.rows[:rows]
        else:
            labels = [row[0] for row in self.rows]
            unknown = [label for label in rows if label not in labels]
            if unknown:
                raise ValueError(f"no row {unknown} in this table; its rows are {labels}")
            body = [self.rows[labels.index(label)] for label in rows]
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
    """Collects every th/td cell as (is_th, text, rowspan, colspan), row by row, noting the rows of the table head."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[bool, list[tuple[bool, str, int, int]]]] = []
        self.in_head = self.in_style = False
        self.cell: list | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "thead":
            self.in_head = True
        elif tag == "tr":
            self.rows.append((self.in_head, []))
        elif tag in ("th", "td"):
            spans = dict(attrs)
            self.cell = [tag == "th", "", int(spans.get("rowspan") or 1), int(spans.get("colspan") or 1)]
        elif tag == "style":
            self.in_style = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "thead":
            self.in_head = False
        elif tag in ("th", "td") and self.rows and self.cell is not None:
            is_th, text, rowspan, colspan = self.cell
            self.rows[-1][1].append((is_th, " ".join(text.split()), rowspan, colspan))
            self.cell = None
        elif tag == "style":
            self.in_style = False

    def handle_data(self, data: str) -> None:
        if self.cell is not None and not self.in_style:
            self.cell[1] += data


def grid(rows: list[list[tuple[bool, str, int, int]]]) -> list[list[tuple[bool, str]]]:
    """Rows with every rowspan and colspan expanded, so that column j means the same column in every row."""
    pending: dict[int, tuple[int, tuple[bool, str]]] = {}  # column -> (rows still to fill, cell)
    out = []
    for cells in rows:
        row: list[tuple[bool, str]] = []
        queue = list(cells)
        while queue or any(col >= len(row) for col in pending):
            col = len(row)
            if col in pending:
                left, cell = pending[col]
                row.append(cell)
                pending[col] = (left - 1, cell)
                if left - 1 == 0:
                    del pending[col]
                continue
            if not queue:
                break
            is_th, text, rowspan, colspan = queue.pop(0)
            for offset in range(colspan):
                row.append((is_th, text))
                if rowspan > 1:
                    pending[col + offset] = (rowspan - 1, (is_th, text))
        out.append(row)
    return out


def from_html(source: str) -> Table:
    """A pandas DataFrame's HTML as a Table. The row label joins the index levels ("sentiment · pretrained"); the
    column names join the column levels; an index-names header row names the label column."""
    parser = _Cells()
    parser.feed(source)
    head = grid([cells for in_head, cells in parser.rows if in_head])
    body = grid([cells for in_head, cells in parser.rows if not in_head and cells])
    if not head and body:
        head, body = body[:1], body[1:]
    if not head or not body:
        raise ValueError("no table in this output")
    levels = next((n for n, (is_th, _) in enumerate(body[0]) if not is_th), len(body[0]))
    levels = max(levels, 1)
    width = max(len(row) for row in head + body)
    names = ["" for _ in range(levels)]
    columns = ["" for _ in range(width - levels)]
    for row in head:
        row = [text for _, text in row] + [""] * (width - len(row))
        if not any(row[levels:]) and any(row[:levels]):
            names = row[:levels]  # pandas writes the index names on a row of their own
            continue
        names = [a or b for a, b in zip(names, row[:levels])]
        columns = [f"{a} {b}".strip() if b and b != a else a for a, b in zip(columns, row[levels:])]
    header = [" · ".join(n for n in names if n)] + columns
    rows = [[" · ".join(text for _, text in row[:levels])] + [text for _, text in row[levels:]] for row in body]
    ragged = [row[0] for row in rows if len(row) != len(header)]
    if ragged:
        raise ValueError(f"cannot line this table's rows up with its {len(header)} columns (rows {ragged[:3]})")
    return Table(header, rows)


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
