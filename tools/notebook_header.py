"""Keep every notebook's header the same: an "Open in Colab" link under the title and the bootstrap cell.

The bootstrap is the first paragraph of each notebook's first code cell. It finds ``course_lib`` in this checkout
or a pip install and, in a fresh environment such as Colab where neither exists, clones the course and installs it
with ``tools/install.py``. Its text lives here, once; this tool writes it (and the Colab link, built from the
repository address in ``pyproject.toml``) into every notebook, points the README's Colab links and clone command at
the same address, and the tests check that nothing has drifted.

Usage: ``python tools/notebook_header.py`` (rewrite), ``python tools/notebook_header.py --check`` (report only).
A fork changes ``[project.urls] Repository`` in pyproject.toml and runs this tool once.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLAB_LINE = re.compile(r"^\[Open in Colab\]\(https://colab\.research\.google\.com/github/[^)]*\)[^\n]*$", re.M)
BOOTSTRAP_TEMPLATE = '''\
# Find course_lib: this checkout (run from notebooks/ or notebooks/solutions/), a pip install, or -- in a fresh
# environment such as Colab -- a clone of the course, installed by its tools/install.py (README: "Colab").
import os
import subprocess
import sys
from pathlib import Path
try:
    import course_lib
except ImportError:
    root = next((p for p in [Path.cwd(), *Path.cwd().parents] if (p / "course_lib").is_dir()), None)
    if root is None:
        root = Path(os.environ.get("COURSE_HOME", "peft-from-scratch")).resolve()
        if not (root / "course_lib").is_dir():
            repo = os.environ.get("COURSE_REPO", "{repository}")
            subprocess.run(["git", "clone", "--depth", "1", repo, str(root)], check=True)
        subprocess.run([sys.executable, str(root / "tools" / "install.py"), "--extras", "real"], check=True)
    sys.path.insert(0, str(root))
    import course_lib'''


def repository() -> str:
    """The course's public git address, from pyproject.toml's [project.urls] Repository."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["urls"]["Repository"]


def bootstrap_source() -> str:
    """The bootstrap paragraph every notebook's first code cell starts with."""
    return BOOTSTRAP_TEMPLATE.replace("{repository}", repository())


def colab_url(notebook: Path) -> str:
    """Colab's address for a notebook of this repository's main branch."""
    slug = repository().removeprefix("https://github.com/").removesuffix(".git")
    return f"https://colab.research.google.com/github/{slug}/blob/main/{notebook.resolve().relative_to(ROOT)}"


def colab_line(notebook: Path) -> str:
    """The Markdown line under each notebook's title."""
    return (f"[Open in Colab]({colab_url(notebook)}) (choose a GPU runtime: the notebook then runs the `gpu` "
            "profile; its first cell installs the course)")


def notebooks() -> list[Path]:
    """Every lesson and solution notebook."""
    folder = ROOT / "notebooks"
    return sorted(folder.glob("[0-9]*.ipynb")) + sorted((folder / "solutions").glob("*.ipynb"))


def with_header(notebook: Path, nb: dict) -> dict:
    """A copy of the notebook's JSON with the Colab line and the bootstrap paragraph in place."""
    nb = json.loads(json.dumps(nb))
    title = nb["cells"][0]
    text = COLAB_LINE.sub("", "".join(title["source"]))
    heading, _, rest = text.partition("\n")
    title["source"] = split_lines(f"{heading}\n\n{colab_line(notebook)}\n\n{rest.lstrip(chr(10))}".rstrip("\n"))
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    source = "".join(code["source"])
    if "import course_lib" not in source.split("\n\n")[0]:
        raise ValueError(f"{notebook}: the first code cell does not start with the course_lib bootstrap")
    _, _, after = source.partition("\n\n")
    code["source"] = split_lines(bootstrap_source() + ("\n\n" + after if after else ""))
    return nb


def with_readme_links(text: str) -> str:
    """README text whose Colab links and clone command point at the repository in pyproject.toml."""
    slug = repository().removeprefix("https://github.com/").removesuffix(".git")
    text = re.sub(r"https://colab\.research\.google\.com/github/[^/\s]+/[^/\s]+/blob/main/",
                  f"https://colab.research.google.com/github/{slug}/blob/main/", text)
    return re.sub(r"git clone https://github\.com/[^/\s]+/[^/\s]+", f"git clone {repository()}", text)


def split_lines(text: str) -> list[str]:
    """Notebook JSON stores a cell's source as lines that keep their newline."""
    return text.splitlines(keepends=True)


def main(argv: list[str]) -> int:
    """Rewrite every notebook's header, or with --check list the notebooks whose header drifted."""
    check = "--check" in argv
    drifted = []
    for path in notebooks():
        nb = json.loads(path.read_text(encoding="utf-8"))
        fixed = with_header(path, nb)
        if fixed != nb:
            drifted.append(path.relative_to(ROOT))
            if not check:
                path.write_text(json.dumps(fixed, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    if with_readme_links(text) != text:
        drifted.append(readme.relative_to(ROOT))
        if not check:
            readme.write_text(with_readme_links(text), encoding="utf-8")
    verb = "out of date" if check else "updated"
    print(f"{len(drifted)} file(s) {verb}" + "".join(f"\n  {p}" for p in drifted))
    return 1 if check and drifted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
