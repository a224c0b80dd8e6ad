"""Build the instructor decks: one reveal.js deck per notebook plus a course overview, all working offline.

    python -m slides.build [--out build/slides] [--notebooks notebooks] [--no-solutions] [--check] [NAME ...]

Each executed notebook is read, marked with slide types by slides/rules.py (the marked copy is kept in
<out>/_marked/), and converted by nbconvert's slides exporter with the template in slides/templates/. reveal.js
(from the sphinx-revealjs package) is copied to <out>/_assets/ and formulas are turned into MathML (slides/mathml.py),
so the decks open from disk with no network. <out>/decks.json lists the decks, their slide counts and any formula
that could not be converted.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import re
import shutil
import sys
import time
from pathlib import Path

import nbformat
from nbconvert import SlidesExporter

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the slides package, when run as a file
    sys.path.insert(0, str(ROOT))

from slides.mathml import markdown_with_mathml  # noqa: E402
from slides.overview import overview_notebook  # noqa: E402
from slides.rules import LESSON, SOLUTIONS, mark_notebook  # noqa: E402

HERE = Path(__file__).resolve().parent
ASSETS = "_assets"
OVERVIEW = "index.html"
# The notebooks' "Open in Colab" line (tools/notebook_header.py) is for readers on GitHub; decks stay offline.
COLAB_LINK = re.compile(r"^\[Open in Colab\]\(https://colab\.research\.google\.com/[^)]*\)[^\n]*\n?", re.M)
WIDTH, HEIGHT = 1280, 720


def package_dir(name: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"The package {name!r} is not installed; run `bash course.sh setup` (it is a course "
                           "dependency in pyproject.toml).")
    return Path(next(iter(spec.submodule_search_locations)))


def copy_assets(out: Path) -> None:
    """Copy reveal.js and the course CSS next to the decks."""
    reveal = package_dir("sphinx_revealjs") / "_static" / "revealjs"
    target = out / ASSETS
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(reveal / "dist", target / "reveal" / "dist", dirs_exist_ok=True)
    shutil.copytree(reveal / "plugin" / "notes", target / "reveal" / "plugin" / "notes", dirs_exist_ok=True)
    shutil.copy2(reveal / "LICENSE", target / "reveal" / "LICENSE")
    shutil.copy2(HERE / "theme" / "course.css", target / "course.css")


def make_exporter() -> SlidesExporter:
    """nbconvert's slides exporter with the course template and local reveal.js."""
    return SlidesExporter(
        template_name="course_reveal",
        extra_template_basedirs=[str(HERE / "templates")],
        reveal_url_prefix=f"{ASSETS}/reveal",
        reveal_theme="white",
        reveal_transition="slide",
        reveal_width=str(WIDTH),
        reveal_height=str(HEIGHT),
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )


def deck_title(nb: nbformat.NotebookNode, fallback: str) -> str:
    """A deck's title: notebook metadata title, else its first '# ' heading."""
    if nb.metadata.get("title"):
        return nb.metadata["title"]
    for cell in nb.cells:
        match = re.search(r"^#\s+(.+)$", cell.source, flags=re.MULTILINE) if cell.cell_type == "markdown" else None
        if match:
            return match.group(1).strip()
    return fallback


def count_slides(marked: nbformat.NotebookNode) -> int:
    """Slides in a marked notebook: reveal's count of slides plus sub-slides."""
    types = [cell.metadata.get("slideshow", {}).get("slide_type", "-") for cell in marked.cells]
    visible = [t for t in types if t not in ("skip", "notes")]
    return sum(t in ("slide", "subslide") for t in visible[1:]) + (1 if visible else 0)


def write_deck(marked: nbformat.NotebookNode, title: str, path: Path, exporter: SlidesExporter) -> list[str]:
    """Convert a marked notebook to a reveal.js HTML deck; return the formulas that could not be converted."""
    math_errors: list[str] = []
    marked = copy.deepcopy(marked)
    for cell in marked.cells:
        if cell.cell_type == "markdown":
            cell.source = markdown_with_mathml(COLAB_LINK.sub("", cell.source), math_errors)
    resources = {"metadata": {"name": title}, "course_slides": {"assets": ASSETS}}
    body, _ = exporter.from_notebook_node(marked, resources=resources)
    if re.search(r"""(src|href)=["']https?://""", body):
        bad = sorted(set(re.findall(r"""(?:src|href)=["'](https?://[^"']+)""", body)))
        raise RuntimeError(f"{path.name} would load from the network: {bad[:5]}")
    path.write_text(body, encoding="utf-8")
    return math_errors


def find_notebooks(notebook_dir: Path, solutions: bool = True) -> list[Path]:
    """Lesson notebooks (NN_*.ipynb), then their solutions."""
    found = sorted(notebook_dir.glob("[0-9]*.ipynb"))
    if solutions:
        found += sorted((notebook_dir / "solutions").glob("*.ipynb"))
    return found


def build(out: Path, notebook_dir: Path, solutions: bool = True, only: list[str] | None = None) -> list[dict]:
    """Build every deck (or those whose notebook name contains one of `only`); return the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    copy_assets(out)
    if not only:
        for stale in [*out.glob("*.html"), *(out / "_marked").glob("*.ipynb")]:
            stale.unlink()
    (out / "_marked").mkdir(exist_ok=True)
    exporter = make_exporter()
    manifest, decks = [], {}
    for notebook in find_notebooks(notebook_dir, solutions):
        if only and not any(name in notebook.name for name in only):
            continue
        start = time.perf_counter()
        try:
            nb = nbformat.read(notebook, as_version=4)
            relative = notebook.relative_to(notebook_dir.parent).as_posix()
            policy = SOLUTIONS if notebook.parent.name == "solutions" else LESSON
            marked = mark_notebook(nb, f"PEFT from scratch · {relative}", policy)
        except Exception as err:  # name the notebook: the rules or a half-written file
            raise RuntimeError(f"Cannot build slides from {notebook}: {err}") from err
        nbformat.write(marked, out / "_marked" / notebook.name)
        deck = notebook.stem + ".html"
        math_errors = write_deck(marked, deck_title(nb, notebook.stem), out / deck, exporter)
        decks[notebook.name] = deck
        manifest.append({"deck": deck, "notebook": relative,
                         "slides": count_slides(marked), "math_errors": math_errors,
                         "seconds": round(time.perf_counter() - start, 2)})
    if not only:
        overview = overview_notebook(ROOT, notebook_dir, decks)
        nbformat.write(overview, out / "_marked" / "index.ipynb")
        math_errors = write_deck(overview, overview.metadata["title"], out / OVERVIEW, exporter)
        manifest.insert(0, {"deck": OVERVIEW, "notebook": None, "slides": count_slides(overview),
                            "math_errors": math_errors, "seconds": 0})
    if only and (out / "decks.json").is_file():  # a partial build updates the manifest of the full one
        built = {row["deck"] for row in manifest}
        previous = json.loads((out / "decks.json").read_text(encoding="utf-8"))
        manifest = [row for row in previous if row["deck"] not in built] + manifest
    (out / "decks.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Command line: build the decks and print one line per deck."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="build only notebooks whose file name contains one of these")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "slides", help="output folder")
    parser.add_argument("--notebooks", type=Path, default=ROOT / "notebooks", help="folder of executed notebooks")
    parser.add_argument("--no-solutions", action="store_true", help="skip notebooks/solutions/")
    parser.add_argument("--check", action="store_true",
                        help="then open every deck in headless Chromium (network off) and save title screenshots")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    manifest = build(args.out.resolve(), args.notebooks.resolve(), not args.no_solutions, args.names)
    for row in manifest:
        print(f"{row['deck']:<40} {row['slides']:>3} slides")
        for error in row["math_errors"]:
            print(f"    formula not converted (shown as TeX): {error}")
    print(f"{len(manifest)} decks in {args.out} ({time.perf_counter() - start:.1f} s); open {args.out / OVERVIEW}")
    if args.check:
        from slides.browser import main as check

        return check([str(args.out)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
