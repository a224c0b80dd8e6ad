"""Packaging: environment.yml lists pyproject.toml's packages, and CI's lowest-version pins equal the declared floors."""

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


def _floors() -> dict[str, str]:
    """Every direct requirement's `>=` bound, by normalized name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    floors = {}
    for req in reqs:
        found = re.search(r">=\s*([0-9][0-9.]*)", req)
        assert found, f"{req}: declare a lower bound (CI tests it)"
        floors[_name(req)] = found.group(1)
    return floors


def _release(version: str) -> tuple[int, ...]:
    """'4.0' and '4.0.0' compare equal."""
    parts = [int(p) for p in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def test_ci_tests_every_declared_floor():
    pins = {}
    for line in (ROOT / ".ci" / "lowest-versions.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[_name(name)] = version.strip()
    floors = _floors()
    missing = sorted(set(floors) - set(pins))
    assert not missing, f"pin these at their floor in .ci/lowest-versions.txt: {missing}"
    differ = {n: (floors[n], pins[n]) for n in floors if _release(floors[n]) != _release(pins[n])}
    assert not differ, f"declared floor vs CI pin: {differ}"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "lowest-versions.txt" in ci, ".ci/run must install and test the lowest versions"
