"""LoRA (Hu et al. 2021): a trainable low-rank update ``W0 + (alpha/r) * B @ A`` beside a frozen weight.

For a frozen ``nn.Linear`` with weight ``W0`` (``out x in``), LoRA learns ``A`` (``r x in``)
and ``B`` (``out x r``) with ``r << min(in, out)``::

    h = W0 x + b + scaling * B (A x),     scaling = alpha / r   (rsLoRA: alpha / sqrt(r))

``A`` starts like an ``nn.Linear`` weight (Kaiming-uniform), ``B`` starts at zero, so a
fresh LoRA changes nothing. After training, ``scaling * B @ A`` can be *merged* into
``W0``: the merged model is exactly as fast as the base model.

The model's code is never edited: each target layer is replaced by a :class:`LoRALinear`
that keeps the original as ``base_layer`` (``...attn.q_proj.weight`` becomes
``...attn.q_proj.base_layer.weight``) and holds named adapters in ``lora_A`` / ``lora_B``
(``ModuleDict``s keyed by adapter name), the same layout as Hugging Face ``peft``. A new
adapter is *inactive* until :func:`set_active_lora` (or :func:`mark_lora_trainable`) switches it on.

:func:`save_lora` / :func:`load_lora` use peft's file format (``adapter_config.json`` and
``adapter_model.safetensors`` with keys ``base_model.model.<module path>.lora_A.weight``),
so a LoRA trained here loads with ``peft.PeftModel.from_pretrained`` and vice versa.
GPT-2's ``Conv1D`` stores its weight as ``in x out`` (peft's ``fan_in_fan_out=True``);
:class:`LoRALinear` transposes the update for it. A 4-bit :class:`~course_lib.peft.quant.Linear4bit`
base (QLoRA) works like an nn.Linear, except that it cannot be merged (it would be re-quantized).

Beyond one adapter at a time: :mod:`~course_lib.peft.lora_merging` builds a new adapter from several
(``add_weighted_lora``), and :mod:`~course_lib.peft.lora_serving` runs a batch whose rows use different
adapters (``mixed_batch``, through ``LoRALinear.row_adapters``).
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import torch
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from ..checkpoints import read_saved_config, read_tensors
from .freezing import DEFAULT_HEAD_PATTERNS
from .quant import Linear4bit
from .spine import (PEFT_PREFIX, Ledger, activate_layers, delete_named, get_ledger, layers_of_type,
                    ledger_active, ledger_names, mark_named_trainable, require_ledger, save_peft_adapter,
                    set_submodule, suffix_names, unload_layers)
from .spine import find_targets as _find_paths

_PEFT_KEY = re.compile(r"^base_model\.model\.(.+)\.lora_([AB])\.weight$")


def lora_param_count(in_features: int, out_features: int, r: int) -> int:
    """Parameters of one LoRA update: A (r x in) plus B (out x r)."""
    return r * (in_features + out_features)


def _features(base: nn.Module) -> tuple[int, int]:
    """(in_features, out_features) of an nn.Linear, a 4-bit Linear4bit or a GPT-2 Conv1D (weight stored as in x out)."""
    if isinstance(base, Conv1D):
        return base.weight.shape[0], base.weight.shape[1]
    if isinstance(base, (nn.Linear, Linear4bit)):
        return base.in_features, base.out_features
    raise TypeError(f"LoRA wraps nn.Linear, Linear4bit or transformers Conv1D layers, got {type(base).__name__}")


def _device_dtype(base: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where and in which dtype LoRA's A and B live: the base weight's (a 4-bit base: its compute dtype)."""
    if isinstance(base, Linear4bit):
        return base.packed.device, base.compute_dtype
    return base.weight.device, base.weight.dtype


class LoRALinear(nn.Module):
    """A frozen-able base layer plus named low-rank updates: ``base_layer(x) + scaling * B(A(dropout(x)))``."""

    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float = 0.0, use_rslora: bool = False,
                 name: str = "default", merge_on_eval: bool = False) -> None:
        super().__init__()
        self.in_features, self.out_features = _features(base)
        self.base_layer = base
        self.fan_in_fan_out = isinstance(base, Conv1D)  # weight is in x out: transpose the update
        self.lora_A, self.lora_B, self.lora_dropout = nn.ModuleDict(), nn.ModuleDict(), nn.ModuleDict()
        self.scaling: dict[str, float] = {}
        self.active: list[str] = []   # adapters used by forward (and merged by merge())
        self.merged: list[str] = []   # adapters whose update is currently inside base_layer.weight
        self.disabled = False         # True: forward runs the base layer only
        self.row_adapters: Optional[list[str]] = None  # set by lora_serving.mixed_batch: row i uses row_adapters[i]
        if merge_on_eval and isinstance(base, Linear4bit):
            raise ValueError("merge_on_eval is not possible on a 4-bit (Linear4bit) base layer: merging would "
                             "re-quantize the weight and lose the update. Use merge_on_eval=False.")
        self.merge_on_eval = merge_on_eval
        self.add_adapter(name, r, alpha, dropout, use_rslora)
        self.active = [name]

    def add_adapter(self, name: str, r: int, alpha: float, dropout: float = 0.0, use_rslora: bool = False) -> None:
        """Add adapter ``name`` (inactive): A Kaiming-uniform like nn.Linear, B zero."""
        if name in self.lora_A:
            raise ValueError(f"This layer already has a LoRA adapter named {name!r}")
        limit = min(self.in_features, self.out_features)
        if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= limit:
            raise ValueError(f"LoRA rank r must be an integer with 1 <= r <= min(in_features, out_features) = "
                             f"{limit} for this {self.in_features}->{self.out_features} layer, got r={r!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
            raise ValueError(f"LoRA alpha must be a finite number > 0 (e.g. 16), got {alpha!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {dropout!r}")
        device, dtype = _device_dtype(self.base_layer)
        a = nn.Linear(self.in_features, r, bias=False).to(device=device, dtype=dtype)
        b = nn.Linear(r, self.out_features, bias=False).to(device=device, dtype=dtype)
        nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5))  # what nn.Linear does for its own weight
        nn.init.zeros_(b.weight)                            # B = 0: the update starts at exactly zero
        self.lora_A[name], self.lora_B[name] = a, b
        self.lora_dropout[name] = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.scaling[name] = alpha / math.sqrt(r) if use_rslora else alpha / r
        self.lora_dropout[name].train(self.training)

    def delete_adapter(self, name: str) -> None:
        """Remove adapter ``name`` (unmerging it first if it is merged)."""
        if name in self.merged:
            self.unmerge()
        for d in (self.lora_A, self.lora_B, self.lora_dropout):
            del d[name]
        del self.scaling[name]
        self.active = [n for n in self.active if n != name]

    def set_active(self, names: list[str]) -> None:
        """Use these adapters (the ones this layer has); the layer must not be merged."""
        names = [n for n in names if n in self.lora_A]
        if self.merged and names != self.active:
            raise RuntimeError(f"Layer has merged adapters {self.merged}: unmerge before switching adapters.")
        self.active = names

    def delta_weight(self, name: str) -> Tensor:
        """scaling * B @ A, shaped like ``base_layer.weight`` (transposed for Conv1D)."""
        delta = self.scaling[name] * (self.lora_B[name].weight @ self.lora_A[name].weight)
        return delta.T if self.fan_in_fan_out else delta

    @torch.no_grad()
    def merge(self) -> None:
        """Add the active adapters' updates into the base weight; already merged ones are skipped."""
        pending = [name for name in self.active if name not in self.merged]
        if pending and isinstance(self.base_layer, Linear4bit):
            raise RuntimeError(
                f"Cannot merge LoRA adapter(s) {pending} into a 4-bit ({self.base_layer.code_book}) base weight: "
                f"the merged weight would have to be re-quantized to 4 bits, and that rounding error is larger "
                f"than a typical LoRA update, so the update would be mostly lost. Either call "
                f"course_lib.peft.quant.dequantize_model(model) first (the base becomes a full-precision "
                f"nn.Linear, then merge), or keep the adapter unmerged (forward already adds it).")
        for name in self.active:
            if name not in self.merged:
                self.base_layer.weight += self.delta_weight(name).to(self.base_layer.weight.dtype)
                self.merged.append(name)

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract every merged update again (newest first)."""
        while self.merged:
            self.base_layer.weight -= self.delta_weight(self.merged.pop()).to(self.base_layer.weight.dtype)

    def train(self, mode: bool = True) -> "LoRALinear":
        """Like nn.Module.train; with ``merge_on_eval`` also merge on eval() and unmerge on train() (loralib)."""
        super().train(mode)
        if self.merge_on_eval and mode:
            self.unmerge()
        elif self.merge_on_eval:
            self.merge()
        return self

    def forward(self, x: Tensor) -> Tensor:
        if self.training and torch.is_grad_enabled() and any(
                self.lora_A[n].weight.requires_grad or self.lora_B[n].weight.requires_grad for n in self.merged):
            raise RuntimeError(f"LoRA adapter(s) {self.merged} are merged into the base weight, so a training step "
                               f"would not update them (forward skips merged updates). Call unmerge_lora(model) "
                               f"before training, and merge again for inference.")
        out = self.base_layer(x)
        if self.disabled:
            if self.merged:
                raise RuntimeError("LoRA is disabled but merged into the weight: unmerge first.")
            return out
        if self.row_adapters is not None:
            return self._mixed_batch_forward(x, out)
        for name in self.active:
            if name not in self.merged:  # merged updates are already inside base_layer.weight
                a, b, drop = self.lora_A[name], self.lora_B[name], self.lora_dropout[name]
                out = out + self.scaling[name] * b(a(drop(x.to(a.weight.dtype)))).to(out.dtype)
        return out

    def _mixed_batch_forward(self, x: Tensor, out: Tensor) -> Tensor:
        """Row i gets adapter ``row_adapters[i]``'s update (none for "__base__" or one this layer lacks)."""
        names = self.row_adapters
        if len(names) != len(x):
            raise ValueError(f"mixed_batch got {len(names)} adapter names for a batch of {len(x)} rows: give one "
                             f"name per row")
        if self.merged:
            raise RuntimeError(f"LoRA adapter(s) {self.merged} are merged into the base weight: unmerge_lora(model) "
                               f"before running a mixed batch.")
        for name in dict.fromkeys(names):
            if name not in self.lora_A:  # "__base__", or an adapter that does not reach this layer
                continue
            rows = torch.tensor([i for i, n in enumerate(names) if n == name], device=x.device)
            a, b, drop = self.lora_A[name], self.lora_B[name], self.lora_dropout[name]
            update = self.scaling[name] * b(a(drop(x[rows].to(a.weight.dtype))))
            out = out.index_add(0, rows, update.to(out.dtype))
        return out

    def extra_repr(self) -> str:
        return f"active={self.active}, merged={self.merged}, scaling={self.scaling}"


@dataclass
class LoRAConfig:
    """One adapter's hyper-parameters and where it went (stored on the model)."""

    r: int
    alpha: float
    dropout: float = 0.0
    use_rslora: bool = False
    target_modules: str | list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not math.isfinite(self.alpha) \
                or self.alpha <= 0:
            raise ValueError(f"LoRA alpha must be a finite number > 0 (e.g. 16), got {self.alpha!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"LoRA dropout must be a number in [0, 1), got {self.dropout!r}")
        if not isinstance(self.use_rslora, bool):
            raise ValueError(f"use_rslora must be True or False, got {self.use_rslora!r}")


_LEDGER, _KIND = "_course_lora", "LoRA adapter"
_TARGETS = "nn.Linear/Linear4bit/Conv1D"


def _ledger(model: nn.Module, create: bool = False) -> Optional[Ledger]:
    return get_ledger(model, _LEDGER, _KIND, create)


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """Every LoRALinear in the model, by module path."""
    return layers_of_type(model, LoRALinear)


def _candidates(model: nn.Module) -> list[str]:
    """Paths of the layers LoRA can target: nn.Linear / Linear4bit / Conv1D (or LoRALinear), not LoRA's own A and B."""
    wrapped = list(lora_layers(model))
    return [n for n, m in model.named_modules() if n and isinstance(m, (nn.Linear, Linear4bit, Conv1D, LoRALinear))
            and not any(n.startswith(w + ".") for w in wrapped)]


def find_targets(model: nn.Module, target_modules: str | Iterable[str]) -> list[str]:
    """Paths matched like peft: a str is a regex (fullmatch on the path), a list holds names or path suffixes."""
    return _find_paths(_candidates(model), target_modules, _TARGETS)


def check_rank(model: nn.Module, paths: list[str], r: Any) -> None:
    """A clear error unless ``r`` is an int with 1 <= r <= min(in, out) at every path."""
    for path in paths:
        module = model.get_submodule(path)
        limit = min(_features(module.base_layer if isinstance(module, LoRALinear) else module))
        if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= limit:
            raise ValueError(f"LoRA rank r must be an integer with 1 <= r <= min(in_features, out_features) = "
                             f"{limit} (at {path!r}), got r={r!r}")


def _inject(model: nn.Module, name: str, paths: list[str], config: LoRAConfig, merge_on_eval: bool) -> None:
    """Give every layer in ``paths`` adapter ``name`` (wrapping plain layers in a LoRALinear); validate first."""
    (_ledger(model) or Ledger(_KIND)).require_new(name)
    check_rank(model, paths, config.r)  # everywhere, before changing anything
    for path in paths:
        module = model.get_submodule(path)
        if isinstance(module, LoRALinear):
            module.add_adapter(name, config.r, config.alpha, config.dropout, config.use_rslora)
        else:
            layer = LoRALinear(module, config.r, config.alpha, config.dropout, config.use_rslora, name=name,
                               merge_on_eval=merge_on_eval)
            layer.active = []  # inactive until set_active_lora
            layer.train(module.training)
            set_submodule(model, path, layer)
    _ledger(model, create=True).add(name, config, paths)


def add_lora(model: nn.Module, name: str = "default", target_modules: str | Iterable[str] = ("q_proj", "v_proj"),
             r: int = 8, alpha: float = 16, dropout: float = 0.0, use_rslora: bool = False,
             merge_on_eval: bool = False) -> list[str]:
    """Add LoRA adapter ``name`` (inactive) to every target layer; return the adapted module paths."""
    targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    paths = find_targets(model, targets)
    _inject(model, name, paths, LoRAConfig(r, alpha, dropout, use_rslora, targets), merge_on_eval)
    return paths


def list_lora(model: nn.Module) -> list[str]:
    """Names of the model's LoRA adapters, in the order they were added."""
    return ledger_names(model, _LEDGER)


def active_lora(model: nn.Module) -> list[str]:
    """Names of the LoRA adapters in use."""
    return ledger_active(model, _LEDGER)


def set_active_lora(model: nn.Module, names: str | list[str] | None) -> None:
    """Use one adapter, several (their updates add up), or none (None: the base model)."""
    activate_layers(model, _LEDGER, _KIND, lora_layers(model).values(), names)


def mark_lora_trainable(model: nn.Module, name: str, head_patterns: Iterable[str] = DEFAULT_HEAD_PATTERNS) -> list[str]:
    """Make adapter ``name``'s A, B (DoRA: and magnitude) + the head (() for none) the only trainables; activate."""
    parts = (f".lora_A.{name}.", f".lora_B.{name}.", f".lora_magnitude_vector.{name}.")
    return mark_named_trainable(model, _LEDGER, _KIND, name, lambda n: any(p in n for p in parts), set_active_lora,
                                head_patterns)


@contextmanager
def disable_lora(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block the model is the base model (merged layers are unmerged, then merged back)."""
    layers = list(lora_layers(model).values())
    was_merged = [bool(layer.merged) for layer in layers]
    for layer in layers:
        layer.unmerge()
        layer.disabled = True
    try:
        yield model
    finally:
        for layer, merged in zip(layers, was_merged):
            layer.disabled = False
            if merged:
                layer.merge()


def merge_lora(model: nn.Module) -> None:
    """Merge the active adapters into the base weights of every LoRA layer."""
    for layer in lora_layers(model).values():
        layer.merge()


def unmerge_lora(model: nn.Module) -> None:
    """Undo :func:`merge_lora` everywhere."""
    for layer in lora_layers(model).values():
        layer.unmerge()


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge the active adapter(s) and put the plain base layers back: a LoRA-free model."""
    return unload_layers(model, _LEDGER, lora_layers(model), lambda layer: layer.merge())


def delete_lora(model: nn.Module, name: str) -> None:
    """Remove adapter ``name`` everywhere; layers left without adapters give their base layer back."""
    delete_named(model, _LEDGER, _KIND, name, lambda layer: not layer.lora_A)


def save_lora(model: nn.Module, name: str, directory: str | Path, head_patterns: Iterable[str] = (),
              task_type: Optional[str] = None) -> Path:
    """Write adapter ``name`` in peft's format (+ the head modules as peft ``modules_to_save``)."""
    ledger = require_ledger(model, _LEDGER, _KIND, name)
    config = ledger.configs[name]
    if type(config) is not LoRAConfig:  # e.g. DoRA: its magnitudes and use_dora flag belong in the file too
        raise ValueError(f"Adapter {name!r} is a {type(config).__name__[:-len('Config')]} adapter; save it with "
                         f"course_lib.peft.save_dora, which writes its magnitudes and use_dora=true.")
    tensors: dict[str, Tensor] = {}
    fan_in_fan_out = False
    for path in ledger.paths[name]:
        layer = model.get_submodule(path)
        fan_in_fan_out |= layer.fan_in_fan_out
        for part in ("A", "B"):  # peft leaves the adapter name out of saved keys
            tensors[f"{PEFT_PREFIX}{path}.lora_{part}.weight"] = getattr(layer, f"lora_{part}")[name].weight
    return save_peft_adapter(model, directory, tensors, peft_lora_config(config, fan_in_fan_out, task_type),
                             head_patterns, "peft LoRA")


def peft_lora_config(config: LoRAConfig, fan_in_fan_out: bool, task_type: Optional[str] = None,
                     use_dora: bool = False) -> dict:
    """peft's adapter_config.json fields for a LoRA (or DoRA) adapter with this config."""
    return {
        "peft_type": "LORA", "task_type": task_type, "base_model_name_or_path": None, "revision": None,
        "inference_mode": True, "r": config.r, "lora_alpha": config.alpha, "lora_dropout": config.dropout,
        "target_modules": config.target_modules, "use_rslora": config.use_rslora, "bias": "none",
        "fan_in_fan_out": fan_in_fan_out, "init_lora_weights": True, "use_dora": use_dora, "rank_pattern": {},
        "alpha_pattern": {}, "layers_to_transform": None, "layers_pattern": None,
    }


def load_lora(model: nn.Module, directory: str | Path, name: Optional[str] = None) -> str:
    """Add a LoRA saved in peft's format (by :func:`save_lora` or peft) as ``name`` (default "default").

    The adapted layers are read from the tensor keys; the head (peft ``modules_to_save``) is
    copied into the model. Like :func:`add_lora`, the adapter is not activated.
    """
    directory = Path(directory)
    meta = read_saved_config(directory, "adapter_config.json", "adapter_model.safetensors",
                             "peft LoRA (save_lora or peft)", ("peft_type", "r", "lora_alpha"))
    if meta.get("peft_type") != "LORA":
        raise ValueError(f"Not a LoRA adapter: peft_type is {meta.get('peft_type')!r}")
    if meta.get("use_dora"):
        raise ValueError(f"{directory} holds a DoRA adapter (use_dora=true): load it with course_lib.peft.load_dora.")
    unsupported = {k: meta.get(k) for k in ("rank_pattern", "alpha_pattern", "lora_bias")
                   if meta.get(k)} | ({"bias": meta["bias"]} if meta.get("bias", "none") != "none" else {})
    if unsupported:
        raise ValueError(f"This LoRA uses options course_lib does not implement: {unsupported}")
    tensors = read_tensors(directory / "adapter_model.safetensors")
    lora, head = {}, {}
    for key, t in tensors.items():
        if (m := _PEFT_KEY.match(key)) is not None:
            lora[(m.group(1), m.group(2))] = t
        elif key.startswith(PEFT_PREFIX):
            head[key[len(PEFT_PREFIX):]] = t
        else:
            raise ValueError(f"Unexpected key {key!r}: peft keys start with {PEFT_PREFIX!r}")
    paths = list(dict.fromkeys(path for path, _ in lora))
    for path in paths:
        if (path, "A") not in lora or (path, "B") not in lora:
            raise ValueError(f"{path!r} needs both lora_A and lora_B tensors")
    candidates = set(_candidates(model))
    missing = [p for p in paths if p not in candidates]
    if missing:
        raise ValueError(f"The saved LoRA adapts layers this model lacks: {missing[:4]}; "
                         f"this model has {suffix_names(sorted(candidates))}")
    config = LoRAConfig(meta["r"], meta["lora_alpha"], meta.get("lora_dropout", 0.0),
                        meta.get("use_rslora", False), meta.get("target_modules") or [])
    name = name or "default"
    _inject(model, name, paths, config, merge_on_eval=False)
    existing = dict(model.named_parameters()) | dict(model.named_buffers())
    targets = {(p, part): getattr(model.get_submodule(p), f"lora_{part}")[name].weight for p, part in lora}
    targets |= {k: existing.get(k) for k in head}
    saved = {**lora, **head}
    wrong = [f"{k}: saved {tuple(t.shape)}, model {None if targets[k] is None else tuple(targets[k].shape)}"
             for k, t in saved.items() if targets[k] is None or targets[k].shape != t.shape]
    if wrong:
        delete_lora(model, name)
        raise ValueError("Saved tensors do not fit this model: " + "; ".join(wrong[:4]))
    with torch.no_grad():
        for key, t in saved.items():
            targets[key].copy_(t.to(targets[key].device, targets[key].dtype))
    return name
