"""AdapterFusion (Pfeiffer et al. 2021): learn, per token, how to mix several frozen task adapters.

Two stages. Stage 1 trains one bottleneck adapter per task (:func:`mark_adapter_trainable`).
Stage 2 freezes them all and adds, at every adapter site, a small attention layer whose query is the
state the adapters read (``LN(h + r)`` for Pfeiffer adapters, ``h`` for Houlsby's) and whose keys and values
are the adapters' contributions ``f_i``:

    h + sum_i softmax_i(q . k_i / T) v_i,    q = Q x + b_Q,  k_i = K f_i + b_K,  v_i = V f_i,

then the block's own ``LN(. + r)``. This is AdapterHub's default ("dynamic") ``Fuse``, equal to it in eval mode
given the same weights: no 1/sqrt(d) on the scores, a value projection without bias that starts at the identity
(plus 1e-6 off the diagonal), ``Q`` and ``K`` drawn from N(0, 0.02); in training, dropout on the scores and the
regulariser ``0.01 * ||I - V||_F^2`` per site added to the loss (:meth:`FusionLayer.regularization_loss`, which
the training loop adds). A fresh fusion gives every adapter about the same weight, so it starts near
``h + mean_i f_i``. ``temperature=True`` is AdapterHub's option that starts at T = 50 and lowers T by 0.05 per
forward call down to 1. Only ``Q``, ``K`` and ``V`` (and the task head) are trained. ``uniform=True`` is the
course's ablation without attention: every adapter weighs ``1/N`` and only ``V`` trains (``d*d`` per site), which
isolates what the learned attention adds.

Activation: :func:`set_active_fusion` (or :func:`mark_fusion_trainable`) switches a fusion on.
While it is on, the adapter stack chosen with :func:`set_active_adapters` is *set aside*
(kept, not used): the fusion's sites mix the fused adapters and every other adapter site
runs its base layer only. ``active_adapters(model)`` then reports the fused adapters and
:func:`active_fusion` the fusion's name. ``set_active_fusion(model, None)`` brings the
set-aside stack back; calling ``set_active_adapters`` (or ``mark_adapter_trainable``) also ends the fusion.

This module owns the fusion state: its own ledger on the model (fusion name -> fused adapters and
site paths) and the :class:`FusionLayer` s it places in each :class:`AdapterSite`'s mixer slot.
Not implemented from AdapterHub: the ``static`` variant, ``residual_before`` and value-after-softmax options.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

import torch
from torch import Tensor, nn

from ..checkpoints import copy_saved_tensors, load_head_if_saved, read_saved_config, read_tensors, save_folder
from .adapters import (AdapterConfig, AdapterSite, adapter_ledger, adapter_sites, check_saved_for, list_adapters,
                       model_width)
from .freezing import DEFAULT_HEAD_PATTERNS
from .spine import (HEAD_FILE, Ledger, drop_ledger_if_empty, get_ledger,
                    mark_named_trainable, require_ledger, save_head)

QK_INIT_STD = 0.02       # std of the query and key weights at init (AdapterHub's "bert" init)
VALUE_OFF_DIAGONAL = 1e-6  # the value weight starts as the identity with this value everywhere off the diagonal
REGULARIZATION = 0.01    # weight of ||I - V||_F^2 in the training loss (AdapterHub's)
SCORE_DROPOUT = 0.1      # dropout on the attention scores in training (BERT's attention_probs_dropout_prob)
CONFIG_FILE = "fusion_config.json"
WEIGHTS_FILE = "fusion_model.safetensors"


def fusion_param_count(d_model: int) -> int:
    """Parameters of one fusion layer: query and key (d*d + d each) and a value without bias (d*d)."""
    return 3 * d_model * d_model + 2 * d_model


class FusionLayer(nn.Module):
    """Attention over N adapter contributions: h + sum_i softmax_i(q . k_i / T) v_i (AdapterHub's dynamic Fuse)."""

    def __init__(self, d_model: int, adapter_names: Optional[list[str]] = None, dropout: float = SCORE_DROPOUT,
                 temperature: bool = False, uniform: bool = False) -> None:
        super().__init__()
        if d_model < 1:
            raise ValueError(f"d_model must be >= 1, got {d_model}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        self.d_model = d_model
        self.adapter_names = list(adapter_names or [])  # the adapters it mixes, in order
        self.uniform = bool(uniform)  # the ablation: equal weights 1/N, no query or key (only V trains)
        self.query = None if self.uniform else nn.Linear(d_model, d_model)
        self.key = None if self.uniform else nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model, bias=False)
        self.dropout = nn.Dropout(float(dropout))
        self.temperature = bool(temperature)
        self.T = 50.0 if self.temperature else 1.0
        self.reduction = self.T / 1000.0
        for proj in (self.query, self.key) if not self.uniform else ():
            nn.init.normal_(proj.weight, mean=0.0, std=QK_INIT_STD)
            nn.init.zeros_(proj.bias)
        with torch.no_grad():  # V = identity (+1e-6 elsewhere): a fresh fusion passes the contributions through
            self.value.weight.fill_(VALUE_OFF_DIAGONAL).fill_diagonal_(1.0)
        self.last_weights: Optional[Tensor] = None  # detached attention weights [..., N] of the last call

    def forward(self, h: Tensor, deltas: Tensor, query: Optional[Tensor] = None) -> Tensor:
        """h [..., d], the contributions deltas [..., N, d] and the query input (default h) -> [..., d]."""
        if deltas.shape[:-2] != h.shape[:-1] or deltas.shape[-1] != h.shape[-1]:
            raise ValueError(f"deltas must have shape [..., N, d] matching h {tuple(h.shape)}, "
                             f"got {tuple(deltas.shape)}")
        v = self.value(deltas)                                    # [..., N, d]
        if self.uniform:                                          # the ablation: every adapter weighs 1/N
            weights = torch.full(deltas.shape[:-1], 1.0 / deltas.shape[-2], dtype=v.dtype, device=v.device)
        else:
            q = self.query(h if query is None else query)         # [..., d]
            k = self.key(deltas)                                  # [..., N, d]
            scores = self.dropout((k @ q.unsqueeze(-1)).squeeze(-1))  # [..., N]
            weights = (scores / self.T).softmax(dim=-1)
        self.T = max(self.T - self.reduction, 1.0)                # the temperature schedule (T stays 1 without it)
        self.last_weights = weights.detach()
        return h + (weights.unsqueeze(-2) @ v).squeeze(-2)        # h + sum_i w_i v_i

    def regularization_loss(self) -> Optional[Tensor]:
        """0.01 * ||I - V||_F^2 while V trains (AdapterHub adds it to the training loss), else None."""
        if not self.value.weight.requires_grad:
            return None
        eye = torch.eye(self.d_model, device=self.value.weight.device, dtype=self.value.weight.dtype)
        return REGULARIZATION * (eye - self.value.weight).pow(2).sum()

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, adapters={self.adapter_names}, temperature={self.temperature}"
                + (", uniform attention" if self.uniform else ""))


_LEDGER, _KIND = "_course_fusions", "fusion"


def _ledger(model: nn.Module, create: bool = False) -> Optional[Ledger]:
    return get_ledger(model, _LEDGER, _KIND, create)


def _sites(model: nn.Module, name: str) -> dict[str, AdapterSite]:
    """Fusion ``name``'s sites keyed by module path."""
    return {path: model.get_submodule(path) for path in require_ledger(model, _LEDGER, _KIND, name).paths[name]}


def list_fusions(model: nn.Module) -> list[str]:
    """Names of the model's fusions, in the order they were added."""
    ledger = _ledger(model)
    return ledger.names() if ledger else []


def fusion_adapters(model: nn.Module, name: str) -> list[str]:
    """The adapters fusion ``name`` mixes, in order."""
    return list(require_ledger(model, _LEDGER, _KIND, name).configs[name])


def active_fusion(model: nn.Module) -> Optional[str]:
    """The name of the active fusion, or None."""
    return next((site.active_fusion for site in adapter_sites(model).values()), None)


def _check_fusable(model: nn.Module, adapter_names: list[str]) -> list[str]:
    """The site paths the adapters share; errors unless there are >= 2 distinct adapters of one config."""
    if len(set(adapter_names)) != len(adapter_names):
        raise ValueError(f"Each adapter can be fused once, got {adapter_names}")
    if len(adapter_names) < 2:
        raise ValueError(f"A fusion needs at least 2 adapters to mix, got {adapter_names}")
    existing = list_adapters(model)
    unknown = [n for n in adapter_names if n not in existing]
    if unknown:
        raise KeyError(f"No adapter(s) named {unknown}; this model has: {existing}")
    adapters = adapter_ledger(model)
    configs = {n: adapters.configs[n] for n in adapter_names}
    if len({json.dumps(c.to_dict(), sort_keys=True) for c in configs.values()}) > 1:
        listing = "; ".join(f"{n}: {c}" for n, c in configs.items())
        raise ValueError(f"All fused adapters need the same AdapterConfig (so they sit at the same places); "
                         f"got {listing}")
    paths = adapters.paths[adapter_names[0]]
    differing = [n for n in adapter_names if adapters.paths[n] != paths]
    if differing:
        raise ValueError(f"Adapters {differing} sit at other paths than {adapter_names[0]!r}: {paths}")
    return list(paths)


def add_fusion(model: nn.Module, adapter_names: list[str], name: str = "fusion", dropout: float = SCORE_DROPOUT,
               temperature: bool = False, uniform: bool = False) -> list[str]:
    """Add fusion ``name`` (inactive) over >= 2 adapters of one config; return its site paths.

    ``uniform=True`` is the ablation without attention: every adapter weighs 1/N and only V trains.
    """
    if isinstance(adapter_names, str):
        raise TypeError(f"adapter_names must be a list of adapter names, got the string {adapter_names!r}")
    adapter_names = list(adapter_names)
    (_ledger(model) or Ledger(_KIND)).require_new(name)  # a valid, unused name
    paths = _check_fusable(model, adapter_names)
    for path in paths:
        site = model.get_submodule(path)
        weight = site.base.weight
        layer = FusionLayer(site.d_model, adapter_names, dropout, temperature, uniform).to(device=weight.device,
                                                                                    dtype=weight.dtype)
        site.fusions[name] = layer.train(site.training)
    _ledger(model, create=True).add(name, adapter_names, paths)
    return list(paths)


def set_active_fusion(model: nn.Module, name: Optional[str]) -> None:
    """Switch fusion ``name`` on (the adapter stack is set aside), or off with None (the stack returns)."""
    if name is not None:
        require_ledger(model, _LEDGER, _KIND, name)
    for site in adapter_sites(model).values():
        site.active_fusion = name


def mark_fusion_trainable(model: nn.Module, name: str,
                          head_patterns: Iterable[str] = DEFAULT_HEAD_PATTERNS) -> list[str]:
    """Make fusion ``name`` (+ the head; () for none) the only trainable tensors and activate it; return names."""
    return mark_named_trainable(model, _LEDGER, _KIND, name, lambda n: f".fusions.{name}." in n, set_active_fusion,
                                head_patterns)


def fusion_attention(model: nn.Module, name: str) -> dict[str, Tensor]:
    """Site path -> the attention weights [B, T, N] of fusion ``name``'s last forward pass."""
    weights = {path: site.fusions[name].last_weights for path, site in _sites(model, name).items()}
    if any(w is None for w in weights.values()):
        raise RuntimeError(f"Fusion {name!r} has not run yet: set_active_fusion(model, {name!r}) and run a "
                           f"forward pass first.")
    return weights


def delete_fusion(model: nn.Module, name: str) -> None:
    """Remove fusion ``name`` everywhere (switching it off first if it is active)."""
    if active_fusion(model) == name:
        set_active_fusion(model, None)
    for site in _sites(model, name).values():
        del site.fusions[name]
    _ledger(model).remove(name)
    drop_ledger_if_empty(model, _LEDGER)


def _fusion_parameters(model: nn.Module, name: str) -> dict[str, nn.Parameter]:
    """Fusion ``name``'s parameters keyed by ``<site path>.<query|key|value>.<weight|bias>``."""
    return {f"{path}.{key}": p for path, site in _sites(model, name).items()
            for key, p in site.fusions[name].named_parameters()}


def save_fusion(model: nn.Module, name: str, directory: str | Path, head_patterns: Iterable[str] = ()) -> Path:
    """Write fusion_config.json and fusion_model.safetensors (+ head_model.safetensors if head_patterns)."""
    from safetensors.torch import save_file

    adapters = fusion_adapters(model, name)
    family, d_model = model_width(model)
    layer = next(iter(_sites(model, name).values())).fusions[name]
    meta = {"name": name, "adapters": adapters, "family": family, "d_model": d_model,
            "adapter_config": adapter_ledger(model).configs[adapters[0]].to_dict(),
            "dropout": layer.dropout.p, "temperature": layer.temperature, "uniform": layer.uniform}

    def write(folder: Path) -> None:
        save_file({k: p.detach().cpu().contiguous() for k, p in _fusion_parameters(model, name).items()},
                  str(folder / WEIGHTS_FILE))
        save_head(model, folder, head_patterns)
        (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2))

    return save_folder(directory, write, CONFIG_FILE, lambda saved: "adapters" in saved, "AdapterFusion")


def load_fusion(model: nn.Module, directory: str | Path, name: Optional[str] = None) -> str:
    """Add a saved fusion (its adapters must already be loaded) and its weights (and head, if saved); not activated."""
    directory = Path(directory)
    meta = read_saved_config(directory, CONFIG_FILE, WEIGHTS_FILE, "AdapterFusion (save_fusion)",
                             ("name", "adapters", "family", "d_model", "adapter_config"))
    check_saved_for(model, meta, "Fusion")
    adapters, existing = meta["adapters"], list_adapters(model)
    missing = [n for n in adapters if n not in existing]
    if missing:
        raise KeyError(f"Fusion {meta['name']!r} mixes adapters {adapters}, but this model lacks {missing} "
                       f"(it has {existing}): load them with load_adapter first.")
    saved_config, configs = AdapterConfig.from_dict(meta["adapter_config"]), adapter_ledger(model).configs
    wrong = [f"{n}: {configs[n]}" for n in adapters if configs[n] != saved_config]
    if wrong:
        raise ValueError(f"The fusion was trained on adapters with {saved_config}, but this model has {wrong}.")
    name = name or meta["name"]
    add_fusion(model, adapters, name, meta.get("dropout", SCORE_DROPOUT), meta.get("temperature", False),
               meta.get("uniform", False))
    tensors, params = read_tensors(directory / WEIGHTS_FILE), _fusion_parameters(model, name)
    try:
        copy_saved_tensors(params, tensors)
    except ValueError:
        delete_fusion(model, name)  # leave the model as it was
        raise
    load_head_if_saved(model, directory / HEAD_FILE)
    return name
