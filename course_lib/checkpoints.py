"""Save and load only the trained part of a model: what a PEFT method stores per task."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .params import trainable_state_dict


def write_json_atomic(path: str | Path, data: object) -> Path:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename: readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
    return path


def atomic_write_dir(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Let ``write`` fill a temporary folder, then rename it to ``path``: a crash never leaves half a folder."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed save leaves the old folder as it was
        raise
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path


@contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` while the block runs: a second process waits for the first.

    Used around "load the cache entry, or build and write it", so concurrent notebooks build an entry once and
    the others reuse it. Without ``fcntl`` (Windows) there is no lock; the atomic rename still keeps folders whole.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux or macOS
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def save_folder(directory: str | Path, write: Callable[[Path], None], config_file: str,
                same_kind: Callable[[dict], bool], what: str) -> Path:
    """Save a PEFT module's folder atomically (a save replaces the whole folder: no stale head survives), but
    refuse to replace a folder that holds something other than the same kind of module."""
    directory = Path(directory)
    if directory.is_dir() and any(directory.iterdir()):
        try:
            meta = json.loads((directory / config_file).read_text())
        except (OSError, ValueError):
            meta = None
        if not isinstance(meta, dict) or not same_kind(meta):
            found = sorted(p.name for p in directory.iterdir())[:6]
            raise ValueError(f"{directory} already holds something other than a saved {what} ({found}); save into a "
                             f"new or empty folder (a save replaces the whole folder).")
    return atomic_write_dir(directory, write)


def save_trainable(model: nn.Module, path: str | Path, metadata: dict | None = None) -> Path:
    """Write the model's trainable tensors to a safetensors file (plus optional JSON metadata)."""
    tensors = trainable_state_dict(model)
    if not tensors:
        raise ValueError("The model has no trainable parameters, so there is nothing to save.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"course_metadata": json.dumps(metadata or {})})
    return path


def load_trainable(model: nn.Module, path: str | Path) -> list[str]:
    """Copy tensors saved by `save_trainable` into ``model`` (names and shapes must match); return the names."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    saved = read_tensors(path)
    params = dict(model.named_parameters())
    missing = sorted(set(saved) - set(params))
    if missing:
        raise KeyError(f"The checkpoint has tensors the model lacks: {missing[:5]}; model names look like "
                       f"{list(params)[:5]}.")
    wrong = [f"{n}: saved {tuple(t.shape)} vs model {tuple(params[n].shape)}" for n, t in saved.items()
             if t.shape != params[n].shape]
    if wrong:
        raise ValueError("Shape mismatch between checkpoint and model: " + "; ".join(wrong[:5]))
    with torch.no_grad():
        for n, t in saved.items():
            params[n].copy_(t.to(params[n].device, params[n].dtype))
    return sorted(saved)


def copy_saved_tensors(params: dict[str, nn.Parameter], tensors: dict[str, torch.Tensor]) -> None:
    """Copy saved tensors into the parameters with the same keys; the two key sets must match exactly."""
    if set(tensors) != set(params):
        raise ValueError(f"Saved tensors do not fit this model: missing {sorted(set(params) - set(tensors))[:4]}, "
                         f"unexpected {sorted(set(tensors) - set(params))[:4]}")
    with torch.no_grad():
        for key, p in params.items():
            p.copy_(tensors[key].to(p.device, p.dtype))


def load_head_if_saved(model: nn.Module, path: str | Path) -> None:
    """Load a task head saved next to a PEFT module (via `load_trainable`), if that file exists."""
    if Path(path).is_file():
        load_trainable(model, path)


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a truncated or corrupt file is an error that names it."""
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types, without the path
        raise ValueError(f"{path} is not a readable safetensors file ({type(err).__name__}: {err}); it is "
                         f"truncated or corrupt: save it again.") from err


def read_saved_config(directory: str | Path, config_file: str, weights_file: str, what: str = "module",
                      required: Iterable[str] = ()) -> dict:
    """A saved module's config, after checking that both files exist (else listing what is there), that the
    config is valid JSON and that it has the ``required`` keys of ``what`` (else saying what the folder holds)."""
    directory = Path(directory)
    for file in (config_file, weights_file):
        if not (directory / file).is_file():
            found = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else "no such directory"
            raise FileNotFoundError(f"{directory / file} not found (in {directory}: {found})")
    try:
        config = json.loads((directory / config_file).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{directory / config_file} is not valid JSON ({err}): the save was cut short or the file "
                         f"was edited; save it again.") from err
    missing = [key for key in required if key not in config] if isinstance(config, dict) else list(required)
    if missing:
        held = f"a peft {config['peft_type']} adapter" if isinstance(config, dict) and "peft_type" in config else \
            "something else"
        raise ValueError(f"{directory} does not hold a saved {what} ({config_file} lacks {missing}); it holds {held}.")
    return config
