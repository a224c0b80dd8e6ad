"""The committed notebooks follow the course template and are committed executed (nbval re-runs them)."""

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from clean_notebooks import is_progress_bar  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from slides.sources import NotebookSource  # noqa: E402  (the slides check their numbers by the same rule)

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
LESSONS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
ALL = LESSONS + sorted((NOTEBOOKS / "solutions").glob("*.ipynb"))
HANGUL = re.compile(r"[\uac00-\ud7a3]")


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def markdown(nb: dict) -> str:
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lesson_has_the_course_sections(path):
    nb = load(path)
    first = "".join(nb["cells"][0]["source"])
    assert first.startswith("# ") and HANGUL.search(first.splitlines()[0]), "title needs the Korean course term"
    assert first.startswith(f"# {path.name[:2]} · "), "the title's number is the file's (renumber both together)"
    text = markdown(nb)
    for section in ("Learning goals", "## Summary", "## Exercises", "solutions/"):
        assert section in text, f"{path.name} lacks '{section}'"
    assert "$" in text, "the idea should be stated with a formula"


@pytest.mark.parametrize("path", sorted((NOTEBOOKS / "solutions").glob("*.ipynb")), ids=lambda p: p.name)
def test_solutions_are_titled_with_their_lessons_number(path):
    first = "".join(load(path)["cells"][0]["source"])
    assert first.startswith(f"# {path.name[:2]} · "), "the title's number is the lesson's"
    assert f"`{path.name.replace('_solutions', '')}`" in first, "name the lesson the solutions belong to"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_committed_executed_with_a_plot_and_no_errors(path):
    nb = load(path)
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert code and all(c["execution_count"] is not None for c in code), "commit the notebook executed"
    outputs = [o for c in code for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "every notebook shows at least one plot"
    assert not [o for o in outputs if o.get("name") == "stderr"], "no warnings in the stored outputs"
    bars = [o for o in outputs if is_progress_bar(o)]
    assert not bars, "stored progress bars read '0%' on GitHub: run tools/clean_notebooks.py (course.sh refresh does)"


def test_first_code_cell_finds_course_lib_from_a_checkout():
    for path in ALL:
        first_code = next(c for c in load(path)["cells"] if c["cell_type"] == "code")
        assert "import course_lib" in "".join(first_code["source"]), path.name


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_numbers_in_the_prose_are_numbers_the_outputs_show(path):
    """A measured-looking number written into Markdown must appear in the notebook's own outputs: numbers that
    depend on a run are generated from the results (IPython Markdown), and paper numbers are printed with their
    table, so that the prose cannot drift from what the cells show."""
    loose = NotebookSource(path).unshown_numbers(markdown(load(path)))
    assert not loose, f"{path.name}: numbers in Markdown that no output shows: {loose}"
