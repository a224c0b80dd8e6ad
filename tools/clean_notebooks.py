"""Drop stored progress-bar widgets from executed notebooks (maintainers: ``bash course.sh refresh`` runs it).

A tqdm bar in a notebook is a live widget; a saved notebook keeps only its first text frame ("0%| | 0/150"),
which is what GitHub and nbviewer would show. The bars are transient (``leave=False``), so removing them makes
the stored notebook read as the live one ends up. Usage: ``python tools/clean_notebooks.py NOTEBOOK ...``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

WIDGET = "application/vnd.jupyter.widget-view+json"
PROGRESS = re.compile(r"\d+%\|")


def is_progress_bar(output: dict) -> bool:
    """True for a stored tqdm widget: widget data whose text fallback is a progress bar."""
    data = output.get("data", {})
    return WIDGET in data and bool(PROGRESS.search("".join(data.get("text/plain", ""))))


def clean(path: Path) -> int:
    """Remove progress-bar outputs from one notebook in place; return how many were removed."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    removed = 0
    for cell in notebook["cells"]:
        outputs = cell.get("outputs", [])
        kept = [o for o in outputs if not is_progress_bar(o)]
        removed += len(outputs) - len(kept)
        if outputs:
            cell["outputs"] = kept
    if removed:
        path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return removed


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"{name}: removed {clean(Path(name))} stored progress bar(s)")
