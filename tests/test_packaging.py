"""environment.yml must list the same packages as pyproject.toml (dependencies + extras)."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {r.strip() for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        wanted |= {r.strip() for r in extra}
    pip_lines = []
    in_pip = False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if line.strip() == "- pip:":
            in_pip = True
            continue
        if in_pip and line.strip().startswith("- "):
            pip_lines.append(line.strip()[2:].strip())
    listed = {p for p in pip_lines if not p.startswith("-e")}
    assert {_name(r) for r in listed} == {_name(r) for r in wanted}
    assert listed == wanted, "version bounds differ between environment.yml and pyproject.toml"
    assert any(p.startswith("-e .") for p in pip_lines), "environment.yml must install the course itself"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash course.sh test" in readme and "bash course.sh test" in ci
