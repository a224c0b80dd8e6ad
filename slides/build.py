"""Build the instructor decks: one reveal.js lecture per notebook, from its outline in slides/lectures/, plus the
opening deck (index.html), all working offline from disk.

    python -m slides.build [--out build/slides] [--notebooks notebooks] [--check] [NAME ...]

An outline names the notebook and lists the slides: a takeaway title, a little text, one figure, table, printed
result or piece of code from the executed notebook, and speaker notes (slides/outline.py). reveal.js (from the
sphinx-revealjs package), the course CSS and the bundled fonts are copied to <out>/_assets/; formulas become MathML
at build time (slides/mathml.py). <out>/decks.json lists the decks with their slide and speaker-note counts.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the slides package, when run as a file
    sys.path.insert(0, str(ROOT))

from slides import outline as outlines  # noqa: E402
from slides.overview import overview_html  # noqa: E402
from slides.render import lecture_html  # noqa: E402
from slides.sources import NotebookSource  # noqa: E402

HERE = Path(__file__).resolve().parent
LECTURES = HERE / "lectures"
OVERVIEW = "index.html"
OVERVIEW_OUTLINE = LECTURES / "index.yaml"
ASSETS = "_assets"


def package_dir(name: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"The package {name!r} is not installed; run `bash course.sh setup` (it is a course "
                           "dependency in pyproject.toml).")
    return Path(next(iter(spec.submodule_search_locations)))


def copy_assets(out: Path) -> None:
    """Copy reveal.js, the course CSS and the bundled fonts next to the decks."""
    reveal = package_dir("sphinx_revealjs") / "_static" / "revealjs"
    target = out / ASSETS
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(reveal / "dist", target / "reveal" / "dist", dirs_exist_ok=True)
    shutil.copytree(reveal / "plugin" / "notes", target / "reveal" / "plugin" / "notes", dirs_exist_ok=True)
    shutil.copy2(reveal / "LICENSE", target / "reveal" / "LICENSE")
    shutil.copy2(HERE / "theme" / "course.css", target / "course.css")
    shutil.copytree(HERE / "theme" / "fonts", target / "fonts")


def lecture_outlines() -> list[Path]:
    """Every lecture outline (lessons, then solutions), without the overview's."""
    found = [path for path in sorted(LECTURES.glob("*.yaml")) if path != OVERVIEW_OUTLINE]
    return sorted(found, key=lambda path: ("_solutions" in path.stem, path.stem))


def notes_count(page: str) -> int:
    """Slides of a deck page that carry speaker notes."""
    return len(re.findall(r'<aside class="notes">', page))


def build(out: Path, notebook_dir: Path, only: list[str] | None = None) -> list[dict]:
    """Build every deck (or those whose name contains one of `only`); return the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    copy_assets(out)
    if not only:
        for stale in out.glob("*.html"):
            stale.unlink()
    sources = functools.lru_cache(maxsize=None)(lambda name: NotebookSource(notebook_dir / name))
    manifest = []
    for path in lecture_outlines():
        if only and not any(name in path.stem for name in only):
            continue
        start = time.perf_counter()
        try:
            outline = outlines.load(path)
            if Path(outline.notebook).stem != path.stem:
                raise ValueError(f"{path.name} builds {outline.notebook}; name the outline after its notebook")
            math_errors: list[str] = []
            page, slides = lecture_html(outline, sources, ASSETS, OVERVIEW, math_errors)
        except Exception as err:  # name the outline: a bad reference, a moved cell, a notebook not executed
            raise RuntimeError(f"Cannot build the deck of {path.relative_to(ROOT)}: {err}") from err
        deck = path.stem + ".html"
        (out / deck).write_text(page, encoding="utf-8")
        manifest.append({"deck": deck, "notebook": outline.notebook, "slides": slides, "notes": notes_count(page),
                         "math_errors": math_errors, "seconds": round(time.perf_counter() - start, 2)})
    if not only:
        math_errors = []
        page, slides = overview_html(outlines.load(OVERVIEW_OUTLINE), sources, [row["deck"] for row in manifest],
                                     ASSETS, math_errors)
        (out / OVERVIEW).write_text(page, encoding="utf-8")
        manifest.insert(0, {"deck": OVERVIEW, "notebook": None, "slides": slides, "notes": notes_count(page),
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
    parser.add_argument("names", nargs="*", help="build only decks whose name contains one of these")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "slides", help="output folder")
    parser.add_argument("--notebooks", type=Path, default=ROOT / "notebooks", help="folder of executed notebooks")
    parser.add_argument("--check", action="store_true",
                        help="then open every deck in headless Chromium (network off), step through it with →, "
                             "check every slide and save screenshots")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    manifest = build(args.out.resolve(), args.notebooks.resolve(), args.names)
    for row in manifest:
        print(f"{row['deck']:<40} {row['slides']:>3} slides, {row['notes']:>3} with speaker notes")
        for error in row["math_errors"]:
            print(f"    formula not converted (shown as TeX): {error}")
    print(f"{len(manifest)} decks in {args.out} ({time.perf_counter() - start:.1f} s); open {args.out / OVERVIEW}")
    if args.check:
        from slides.browser import main as check

        return check([str(args.out), *(["--only", *args.names] if args.names else [])])
    return 0


if __name__ == "__main__":
    sys.exit(main())
