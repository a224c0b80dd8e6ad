from pathlib import Path

import pytest

from course_lib.syllabus import SYLLABUS, available_lessons, lesson

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_every_numbered_notebook_is_in_the_syllabus():
    on_disk = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    assert on_disk, "no notebooks found"
    assert on_disk == [item.notebook for item in available_lessons(NOTEBOOKS)]


def test_numbering_and_lookup():
    assert [item.number for item in SYLLABUS] == list(range(len(SYLLABUS)))
    assert all(item.notebook.startswith(f"{item.number:02d}_") for item in SYLLABUS)
    assert lesson(5).notebook == "05_lora.ipynb"
    with pytest.raises(KeyError, match=f"0..{len(SYLLABUS) - 1}"):
        lesson(42)


def test_every_notebook_has_a_solutions_notebook():
    for item in available_lessons(NOTEBOOKS):
        solution = NOTEBOOKS / "solutions" / item.notebook.replace(".ipynb", "_solutions.ipynb")
        assert solution.is_file(), f"missing {solution.name}"


def test_package_exports_and_environment_report():
    import course_lib

    report = course_lib.environment_report()
    assert set(report) == {"python", "torch", "transformers", "datasets", "course_lib", "device", "profile"}
    assert report["profile"] == course_lib.get_profile().name
    for name in course_lib.__all__:
        assert getattr(course_lib, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        course_lib.nope


def test_importing_the_syllabus_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, course_lib.syllabus; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_library_module_a_lesson_names_exists():
    import importlib

    for item in SYLLABUS:
        for module in item.builds:
            importlib.import_module(f"course_lib.{module}")
