"""Save and load only the trained part of a model: what a PEFT method stores per task."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .params import trainable_state_dict


def atomic_write_dir(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Let ``write`` fill a temporary folder, then rename it to ``path``: a crash never leaves half a folder."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path


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
    saved = load_file(str(path))
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


def read_saved_config(directory: str | Path, config_file: str, weights_file: str) -> dict:
    """Check that a saved module's config and weights files exist (else list what is there) and return the config."""
    directory = Path(directory)
    for file in (config_file, weights_file):
        if not (directory / file).is_file():
            found = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else "no such directory"
            raise FileNotFoundError(f"{directory / file} not found (in {directory}: {found})")
    return json.loads((directory / config_file).read_text())
