"""AdapterFusion (Pfeiffer et al. 2021): learn, per token, how to mix several frozen task adapters.

Two stages. Stage 1 trains one bottleneck adapter per task (:func:`train_adapter`).
Stage 2 freezes them all and adds, at every adapter site, a small attention layer
that looks at the site's output ``h`` (the query) and at each adapter's contribution
``delta_i`` (keys and values) and returns

    h + sum_i softmax_i(q . k_i / sqrt(d)) * v_i,    q = Q h,  k_i = K delta_i,  v_i = V delta_i.

``V`` starts close to the identity and ``Q``, ``K`` small, so the attention weights start
nearly uniform and a fresh fusion outputs about ``h + mean_i delta_i``: the average of
the adapters' outputs. Only ``Q``, ``K`` and ``V`` (and the task head) are trained.

Activation: :func:`set_active_fusion` (or :func:`train_fusion`) switches a fusion on.
While it is on, the adapter stack chosen with :func:`set_active_adapters` is *set aside*
(kept, not used): the fusion's sites mix the fused adapters and every other adapter site
runs its base layer only. ``active_adapters(model)`` then reports the fused adapters and
:func:`active_fusion` the fusion's name. ``set_active_fusion(model, None)`` brings the
set-aside stack back; calling ``set_active_adapters`` (or ``train_adapter``) also ends the fusion.

Not implemented from AdapterHub: the softmax temperature schedule and the
``residual_before`` / value-sharing variants; the attention uses plain ``1/sqrt(d)`` scaling.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Iterable, Optional

import torch
from torch import Tensor, nn

from .adapters import (_BOOK, HEAD_FILE, AdapterConfig, AdapterSite, _AdapterBook, _book, _model_width,
                       detect_architecture, list_adapters)
from ..checkpoints import copy_saved_tensors, load_head_if_saved, read_saved_config
from .freezing import DEFAULT_HEAD_PATTERNS, freeze_all, unfreeze, unfreeze_where

QK_INIT_STD = 0.02       # std of the query and key weights at init
VALUE_NOISE_STD = 1e-3   # the value weight starts as identity + N(0, VALUE_NOISE_STD^2) noise
CONFIG_FILE = "fusion_config.json"
WEIGHTS_FILE = "fusion_model.safetensors"


def fusion_param_count(d_model: int) -> int:
    """Parameters of one fusion layer: query, key and value, each d*d + d."""
    return 3 * (d_model * d_model + d_model)


class FusionLayer(nn.Module):
    """Attention over N adapter contributions: h + sum_i softmax_i(q . k_i / sqrt(d)) * v_i."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        if d_model < 1:
            raise ValueError(f"d_model must be >= 1, got {d_model}")
        self.d_model = d_model
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        for proj in (self.query, self.key):
            nn.init.normal_(proj.weight, mean=0.0, std=QK_INIT_STD)
            nn.init.zeros_(proj.bias)
        with torch.no_grad():  # V ~ identity: a fresh fusion passes the adapters' contributions through
            self.value.weight.copy_(torch.eye(d_model) + VALUE_NOISE_STD * torch.randn(d_model, d_model))
        nn.init.zeros_(self.value.bias)
        self.last_weights: Optional[Tensor] = None  # detached attention weights [..., N] of the last call

    def forward(self, h: Tensor, deltas: Tensor) -> Tensor:
        """h [..., d] and the adapters' contributions deltas [..., N, d] -> fused hidden states [..., d]."""
        if deltas.shape[:-2] != h.shape[:-1] or deltas.shape[-1] != h.shape[-1]:
            raise ValueError(f"deltas must have shape [..., N, d] matching h {tuple(h.shape)}, "
                             f"got {tuple(deltas.shape)}")
        q = self.query(h)                                         # [..., d]
        k = self.key(deltas)                                      # [..., N, d]
        v = self.value(deltas)                                    # [..., N, d]
        scores = (k @ q.unsqueeze(-1)).squeeze(-1) / math.sqrt(self.d_model)  # [..., N]
        weights = scores.softmax(dim=-1)
        self.last_weights = weights.detach()
        return h + (weights.unsqueeze(-2) @ v).squeeze(-2)        # h + sum_i w_i v_i

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}"


def _require_fusion(model: nn.Module, name: str) -> _AdapterBook:
    book = _book(model)
    names = list(book.fusions) if book else []
    if name not in names:
        raise KeyError(f"No fusion named {name!r}; this model has: {names}")
    return book


def _sites(model: nn.Module, book: _AdapterBook, name: str) -> dict[str, AdapterSite]:
    """Fusion ``name``'s sites keyed by module path (the fused adapters' paths)."""
    return {path: model.get_submodule(path) for path in book.paths[book.fusions[name][0]]}


def list_fusions(model: nn.Module) -> list[str]:
    """Names of the model's fusions, in the order they were added."""
    book = _book(model)
    return list(book.fusions) if book else []


def fusion_adapters(model: nn.Module, name: str) -> list[str]:
    """The adapters fusion ``name`` mixes, in order."""
    return list(_require_fusion(model, name).fusions[name])


def active_fusion(model: nn.Module) -> Optional[str]:
    """The name of the active fusion, or None."""
    book = _book(model)
    return book.active_fusion if book else None


def add_fusion(model: nn.Module, adapter_names: list[str], name: str = "fusion") -> list[str]:
    """Add fusion ``name`` (inactive) over >= 2 adapters of one config; return its site paths."""
    if isinstance(adapter_names, str):
        raise TypeError(f"adapter_names must be a list of adapter names, got the string {adapter_names!r}")
    adapter_names = list(adapter_names)
    if not isinstance(name, str) or not name or "." in name:
        raise ValueError(f"Fusion names must be non-empty strings without '.', got {name!r}")
    if len(set(adapter_names)) != len(adapter_names):
        raise ValueError(f"Each adapter can be fused once, got {adapter_names}")
    if len(adapter_names) < 2:
        raise ValueError(f"A fusion needs at least 2 adapters to mix, got {adapter_names}")
    existing = list_adapters(model)
    unknown = [n for n in adapter_names if n not in existing]
    if unknown:
        raise KeyError(f"No adapter(s) named {unknown}; this model has: {existing}")
    book = _book(model)
    if name in book.fusions:
        raise ValueError(f"A fusion named {name!r} already exists (fusions: {list(book.fusions)}); "
                         f"delete_fusion it first or pick another name.")
    configs = {n: book.configs[n] for n in adapter_names}
    if len({json.dumps(c.to_dict(), sort_keys=True) for c in configs.values()}) > 1:
        listing = "; ".join(f"{n}: {c}" for n, c in configs.items())
        raise ValueError(f"All fused adapters need the same AdapterConfig (so they sit at the same places); "
                         f"got {listing}")
    paths = book.paths[adapter_names[0]]
    differing = [n for n in adapter_names if book.paths[n] != paths]
    if differing:
        raise ValueError(f"Adapters {differing} sit at other paths than {adapter_names[0]!r}: {paths}")
    for path in paths:
        site = model.get_submodule(path)
        weight = site.base.weight
        layer = FusionLayer(site.d_model).to(device=weight.device, dtype=weight.dtype)
        site.fusions[name] = layer.train(site.training)
        site.fused[name] = list(adapter_names)
    book.fusions[name] = list(adapter_names)
    return list(paths)


def set_active_fusion(model: nn.Module, name: Optional[str]) -> None:
    """Switch fusion ``name`` on (the adapter stack is set aside), or off with None (the stack returns)."""
    if name is not None:
        _require_fusion(model, name)
    book = _book(model)
    if book is None:
        return  # no adapters, no fusion: nothing to switch off
    for module in model.modules():
        if isinstance(module, AdapterSite):
            module.active_fusion = name
    book.active_fusion = name


def train_fusion(model: nn.Module, name: str, head_patterns: Iterable[str] = DEFAULT_HEAD_PATTERNS) -> list[str]:
    """Freeze everything, unfreeze fusion ``name`` (+ the head; () for none), activate it; return trainable names."""
    _require_fusion(model, name)
    freeze_all(model)
    names = unfreeze_where(model, lambda n, _: f".fusions.{name}." in n, what=f"fusion {name!r}")
    head_patterns = list(head_patterns)
    if head_patterns:
        names += [n for n in unfreeze(model, head_patterns) if n not in names]
    set_active_fusion(model, name)
    return names


def fusion_attention(model: nn.Module, name: str) -> dict[str, Tensor]:
    """Site path -> the attention weights [B, T, N] of fusion ``name``'s last forward pass."""
    book = _require_fusion(model, name)
    weights = {path: site.fusions[name].last_weights for path, site in _sites(model, book, name).items()}
    if any(w is None for w in weights.values()):
        raise RuntimeError(f"Fusion {name!r} has not run yet: set_active_fusion(model, {name!r}) and run a "
                           f"forward pass first.")
    return weights


def delete_fusion(model: nn.Module, name: str) -> None:
    """Remove fusion ``name`` everywhere (switching it off first if it is active)."""
    book = _require_fusion(model, name)
    if book.active_fusion == name:
        set_active_fusion(model, None)
    for site in _sites(model, book, name).values():
        del site.fusions[name]
        site.fused.pop(name)
    del book.fusions[name]


def _fusion_parameters(model: nn.Module, name: str) -> dict[str, nn.Parameter]:
    """Fusion ``name``'s parameters keyed by ``<site path>.<query|key|value>.<weight|bias>``."""
    book = _require_fusion(model, name)
    return {f"{path}.{key}": p for path, site in _sites(model, book, name).items()
            for key, p in site.fusions[name].named_parameters()}


def save_fusion(model: nn.Module, name: str, directory: str | Path, head_patterns: Iterable[str] = ()) -> Path:
    """Write fusion_config.json and fusion_model.safetensors (+ head_model.safetensors if head_patterns)."""
    from safetensors.torch import save_file

    book = _require_fusion(model, name)
    adapters = book.fusions[name]
    head_patterns = list(head_patterns)
    head = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters()
            if any(re.search(pattern, n) for pattern in head_patterns)}
    if head_patterns and not head:
        raise ValueError(f"head_patterns {head_patterns} matched no parameter of the model.")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"name": name, "adapters": adapters, "family": book.family, "d_model": book.d_model,
            "adapter_config": book.configs[adapters[0]].to_dict()}
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
    save_file({k: p.detach().cpu().contiguous() for k, p in _fusion_parameters(model, name).items()},
              str(directory / WEIGHTS_FILE))
    if head:
        save_file(head, str(directory / HEAD_FILE))
    return directory


def load_fusion(model: nn.Module, directory: str | Path, name: Optional[str] = None) -> str:
    """Add a saved fusion (its adapters must already be loaded) and its weights (and head, if saved); not activated."""
    from safetensors.torch import load_file

    directory = Path(directory)
    meta = read_saved_config(directory, CONFIG_FILE, WEIGHTS_FILE)
    model_family, layers = detect_architecture(model)
    d_model = _model_width(model, model_family, layers)
    if meta["family"] != model_family:
        raise ValueError(f"Fusion was saved for a {meta['family']!r} model, this model is {model_family!r}.")
    if meta["d_model"] != d_model:
        raise ValueError(f"Fusion was saved for hidden size {meta['d_model']}, this model has {d_model}.")
    adapters, existing = meta["adapters"], list_adapters(model)
    missing = [n for n in adapters if n not in existing]
    if missing:
        raise KeyError(f"Fusion {meta['name']!r} mixes adapters {adapters}, but this model lacks {missing} "
                       f"(it has {existing}): load them with load_adapter first.")
    saved_config, book = AdapterConfig.from_dict(meta["adapter_config"]), getattr(model, _BOOK)
    wrong = [f"{n}: {book.configs[n]}" for n in adapters if book.configs[n] != saved_config]
    if wrong:
        raise ValueError(f"The fusion was trained on adapters with {saved_config}, but this model has {wrong}.")
    name = name or meta["name"]
    add_fusion(model, adapters, name)
    tensors, params = load_file(str(directory / WEIGHTS_FILE)), _fusion_parameters(model, name)
    try:
        copy_saved_tensors(params, tensors)
    except ValueError:
        delete_fusion(model, name)  # leave the model as it was
        raise
    load_head_if_saved(model, directory / HEAD_FILE)
    return name
