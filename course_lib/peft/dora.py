"""DoRA (Liu et al. 2024): LoRA with a learned magnitude per output, ``W' = m * (W0 + dW) / ||W0 + dW||_c``.

DoRA splits a weight into a *direction* (each output row scaled to unit length) and a *magnitude*
(that row's length), and trains them separately. For a frozen ``nn.Linear`` with weight ``W0``
(``out x in``) and a LoRA update ``dW = scaling * B @ A`` (see :mod:`~course_lib.peft.lora`)::

    W' = m * (W0 + dW) / ||W0 + dW||_c      (row-wise: m and the norm have one entry per output feature)

``||.||_c`` is the L2 norm of each output row (peft: ``torch.linalg.norm(W, dim=1)``). The
magnitude ``m`` starts at ``||W0||_c``, and ``B`` starts at zero, so a fresh DoRA *is* the base
layer. The norm is treated as a constant (detached; the paper's Sec. 4.3): it follows ``dW`` in
the forward pass but sends no gradient back, which saves memory and barely changes training.

The forward pass never builds ``W'``. With ``s = m / ||W0 + dW||_c`` (one number per output)::

    h = W' x + b = s * (W0 x) + s * scaling * B (A x) + b
                 = base_layer(x) + (s - 1) * (base_layer(x) - b) + s * scaling * B(A(x))

which reuses the base layer's output, like peft does. With dropout, in training, the extra terms
use ``dropout(x)`` (``(s - 1) * W0 dropout(x) + s * scaling * B(A(dropout(x)))``) while
``base_layer(x)`` keeps the clean input: the same numbers as peft. With several DoRA adapters
active at once, each one rescales the output accumulated so far (peft's order), and merging them
in turn gives the same weight.

A :class:`DoRALinear` is a :class:`~course_lib.peft.lora.LoRALinear` with one more ``ModuleDict``,
``lora_magnitude_vector``, keyed by adapter name (``...q_proj.lora_magnitude_vector.default.weight``,
peft's layout). DoRA adapters live in the LoRA ledger, so :func:`~course_lib.peft.lora.set_active_lora`,
``merge_lora``, ``unmerge_lora``, ``disable_lora``, ``delete_lora`` and ``merge_and_unload`` work on
them unchanged. Use :func:`mark_dora_trainable` (``mark_lora_trainable`` would leave the magnitude
frozen) and :func:`save_dora` / :func:`load_dora` (peft's files with ``"use_dora": true``, whose
saved keys end in ``.lora_magnitude_vector``). A 4-bit :class:`~course_lib.peft.quant.Linear4bit`
base (QDoRA) works in forward but cannot be merged.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoints import read_saved_config, read_tensors
from .freezing import DEFAULT_HEAD_PATTERNS
from .lora import (_KIND, _LEDGER, _PEFT_KEY, PEFT_PREFIX, LoRAConfig, LoRALinear, _candidates, _ledger, check_rank,
                   delete_lora, find_targets, lora_param_count, peft_lora_config, set_active_lora)
from .quant import Linear4bit
from .spine import (Ledger, layers_of_type, mark_named_trainable, require_ledger, save_peft_adapter, set_submodule,
                    suffix_names)

_MAGNITUDE_KEY = re.compile(r"^base_model\.model\.(.+)\.lora_magnitude_vector$")  # peft's saved magnitude key


def dora_param_count(in_features: int, out_features: int, r: int) -> int:
    """Parameters of one DoRA update: LoRA's A and B plus one magnitude per output feature."""
    return lora_param_count(in_features, out_features, r) + out_features


class DoRAMagnitude(nn.Module):
    """One adapter's magnitude ``m`` (a vector, one entry per output feature), stored as ``weight`` like peft."""

    def __init__(self, magnitude: Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(magnitude)

    def extra_repr(self) -> str:
        return f"out_features={self.weight.numel()}"


class DoRALinear(LoRALinear):
    """A LoRALinear whose DoRA adapters also rescale each output: ``m * (W0 + dW) x / ||W0 + dW||_c + b``."""

    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float = 0.0, use_rslora: bool = False,
                 name: str = "default", merge_on_eval: bool = False) -> None:
        super().__init__(base, r, alpha, dropout, use_rslora, name, merge_on_eval)  # adds `name` as plain LoRA
        self.lora_magnitude_vector = nn.ModuleDict()
        self._merged_norms: dict[str, Tensor] = {}  # the norm each merged DoRA adapter used (unmerge needs it)
        self._add_magnitude(name)                   # ... and this makes it a DoRA adapter

    @classmethod
    def from_lora(cls, layer: LoRALinear) -> DoRALinear:
        """A DoRALinear that takes over ``layer``'s base layer and LoRA adapters (moved, not copied)."""
        if isinstance(layer, DoRALinear):
            return layer
        dora = cls.__new__(cls)
        nn.Module.__init__(dora)
        for key, value in vars(layer).items():  # plain attributes: in_features, scaling, active, merged, ...
            if not key.startswith("_"):
                object.__setattr__(dora, key, value)
        for key, module in layer.named_children():  # base_layer, lora_A, lora_B, lora_dropout
            setattr(dora, key, module)
        dora.lora_magnitude_vector = nn.ModuleDict()
        dora._merged_norms = {}
        return dora

    def add_adapter(self, name: str, r: int, alpha: float, dropout: float = 0.0, use_rslora: bool = False,
                    use_dora: bool = False) -> None:
        """Add adapter ``name`` (inactive); ``use_dora=True`` also gives it a magnitude ``m = ||W0||_c``."""
        super().add_adapter(name, r, alpha, dropout, use_rslora)
        if use_dora:
            self._add_magnitude(name)

    def _add_magnitude(self, name: str) -> None:
        """Start adapter ``name``'s magnitude at ``||W0 + dW||_c`` (= ``||W0||_c`` since B = 0): no change at first."""
        self.lora_magnitude_vector[name] = DoRAMagnitude(self.weight_norm(name).clone())

    def is_dora(self, name: str) -> bool:
        """True for a DoRA adapter, False for a plain LoRA one in the same layer."""
        return name in self.lora_magnitude_vector

    def delete_adapter(self, name: str) -> None:
        """Remove adapter ``name`` (unmerging first if it is merged), magnitude included."""
        super().delete_adapter(name)
        if name in self.lora_magnitude_vector:
            del self.lora_magnitude_vector[name]

    def _base_weight(self) -> Tensor:
        """The base weight as ``out x in`` (a Conv1D's ``in x out`` weight transposed, a 4-bit one dequantized)."""
        if isinstance(self.base_layer, Linear4bit):
            return self.base_layer.dequantized_weight()
        weight = self.base_layer.weight
        return weight.T if self.fan_in_fan_out else weight

    def _update(self, name: str) -> Tensor:
        """``scaling * B @ A`` as ``out x in`` (whatever the base layer's orientation)."""
        return self.scaling[name] * (self.lora_B[name].weight @ self.lora_A[name].weight)

    def _scale(self, name: str, norm: Tensor) -> Tensor:
        """DoRA's factor ``m / ||W0 + dW||_c``, one per output feature."""
        return self.lora_magnitude_vector[name].weight / norm

    def _undo(self, weight: Tensor, name: str) -> Tensor:
        """``weight`` with merged adapter ``name`` taken out again (``out x in``)."""
        update = self._update(name).to(weight.dtype)
        if not self.is_dora(name):
            return weight - update
        scale = self._scale(name, self._merged_norms[name]).to(weight.dtype)
        return weight / scale[:, None] - update

    def _unmerged_weight(self) -> Tensor:
        """``W0`` as ``out x in``: the base weight with every merged update taken out (newest first)."""
        weight = self._base_weight()
        if not self.merged:
            return weight
        weight = weight.detach().clone()
        for name in reversed(self.merged):
            weight = self._undo(weight, name)
        return weight

    def weight_norm(self, name: str, weight: Optional[Tensor] = None) -> Tensor:
        """``||W0 + dW||_c`` per output row for adapter ``name``, detached: DoRA treats it as a constant."""
        a = self.lora_A[name].weight
        weight = self._unmerged_weight() if weight is None else weight
        with torch.no_grad():  # the paper's Sec. 4.3 and peft's .detach(): no gradient through the norm
            return torch.linalg.norm(weight.to(a.dtype) + self._update(name), dim=1)

    def adapted_weight(self, name: str) -> Tensor:
        """The weight adapter ``name`` alone gives, ``m * (W0 + dW) / ||W0 + dW||_c`` (``out x in``)."""
        direction = self._unmerged_weight().to(self.lora_A[name].weight.dtype) + self._update(name)
        if not self.is_dora(name):
            return direction
        return self._scale(name, self.weight_norm(name))[:, None] * direction

    @torch.no_grad()
    def merge(self) -> None:
        """Merge the active adapters in turn: DoRA ``W <- m / ||W0 + dW||_c * (W + dW)``, LoRA ``W <- W + dW``."""
        pending = [name for name in self.active if name not in self.merged]
        if not pending:
            return
        if isinstance(self.base_layer, Linear4bit):
            raise RuntimeError(
                f"Cannot merge adapter(s) {pending} into a 4-bit ({self.base_layer.code_book}) base weight: it would "
                f"be re-quantized and the update mostly lost. Call course_lib.peft.quant.dequantize_model(model) "
                f"first, or keep the adapters unmerged (forward already applies them).")
        w0 = self._unmerged_weight()  # every DoRA norm is taken on W0, as in forward (peft does the same)
        weight = self._base_weight()  # a view: writing into it writes the base layer's weight
        merged = weight.clone()
        for name in pending:
            merged = merged + self._update(name).to(merged.dtype)
            if self.is_dora(name):
                self._merged_norms[name] = self.weight_norm(name, w0)
                merged = self._scale(name, self._merged_norms[name]).to(merged.dtype)[:, None] * merged
            self.merged.append(name)
        weight.copy_(merged)

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take every merged update out again (newest first): DoRA ``W <- W / (m / norm) - dW``."""
        if not self.merged:
            return
        weight = self._base_weight()
        unmerged = weight.clone()
        while self.merged:
            name = self.merged[-1]
            unmerged = self._undo(unmerged, name)
            self.merged.pop()
            self._merged_norms.pop(name, None)
        weight.copy_(unmerged)

    def _adapter_parameters(self, name: str) -> list[nn.Parameter]:
        """A, B and (for DoRA) the magnitude of adapter ``name``."""
        params = [self.lora_A[name].weight, self.lora_B[name].weight]
        return params + ([self.lora_magnitude_vector[name].weight] if self.is_dora(name) else [])

    def forward(self, x: Tensor) -> Tensor:
        if self.training and torch.is_grad_enabled() and any(
                p.requires_grad for name in self.merged for p in self._adapter_parameters(name)):
            raise RuntimeError(f"Adapter(s) {self.merged} are merged into the base weight, so a training step "
                               f"would not update them (forward skips merged updates). Call unmerge_lora(model) "
                               f"before training, and merge again for inference.")
        out = self.base_layer(x)
        if self.disabled:
            if self.merged:
                raise RuntimeError("LoRA/DoRA is disabled but merged into the weight: unmerge first.")
            return out
        if getattr(self, "row_adapters", None) is not None:  # lora_serving.mixed_batch's per-row adapters
            raise RuntimeError("A mixed batch (one adapter per row) is not supported with DoRA layers "
                               "(peft refuses it too): run one adapter at a time with set_active_lora.")
        bias = getattr(self.base_layer, "bias", None)
        for name in self.active:
            if name in self.merged:  # merged updates are already inside base_layer.weight
                continue
            a, b, drop = self.lora_A[name], self.lora_B[name], self.lora_dropout[name]
            x_in = x.to(a.weight.dtype)
            if not self.is_dora(name):
                out = out + self.scaling[name] * b(a(drop(x_in))).to(out.dtype)
                continue
            if isinstance(drop, nn.Identity) or not self.training:
                w0_x = out if bias is None else out - bias  # W0 x, from the output so far (peft's order)
            else:  # dropout feeds the DoRA terms only; base_layer(x) above keeps the clean input
                x_in = drop(x_in)
                w0_x = F.linear(x_in, self._base_weight().to(x_in.dtype))
            scale = self._scale(name, self.weight_norm(name))  # m / ||W0 + dW||_c, the norm detached
            extra = (scale - 1) * w0_x.to(scale.dtype) + scale * b(a(x_in)) * self.scaling[name]
            out = out + extra.to(out.dtype)
        return out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dora={list(self.lora_magnitude_vector)}"


class DoRAConfig(LoRAConfig):
    """A DoRA adapter's hyper-parameters (the same as LoRA's) and where it went (stored on the model)."""


def dora_layers(model: nn.Module) -> dict[str, DoRALinear]:
    """Every DoRALinear in the model, by module path."""
    return layers_of_type(model, DoRALinear)


def _inject_dora(model: nn.Module, name: str, paths: list[str], config: DoRAConfig, merge_on_eval: bool) -> None:
    """Give every layer in ``paths`` DoRA adapter ``name`` (a LoRALinear becomes a DoRALinear); validate first."""
    (_ledger(model) or Ledger(_KIND)).require_new(name)
    check_rank(model, paths, config.r)  # everywhere, before changing anything
    for path in paths:
        module = model.get_submodule(path)
        if isinstance(module, LoRALinear):  # it has LoRA (or DoRA) adapters already: keep them
            layer = DoRALinear.from_lora(module)
            layer.add_adapter(name, config.r, config.alpha, config.dropout, config.use_rslora, use_dora=True)
        else:
            layer = DoRALinear(module, config.r, config.alpha, config.dropout, config.use_rslora, name=name,
                               merge_on_eval=merge_on_eval)
            layer.active = []  # inactive until set_active_lora
            layer.train(module.training)
        if layer is not module:
            set_submodule(model, path, layer)
    _ledger(model, create=True).add(name, config, paths)


def add_dora(model: nn.Module, name: str = "default", target_modules: str | Iterable[str] = ("q_proj", "v_proj"),
             r: int = 8, alpha: float = 16, dropout: float = 0.0, use_rslora: bool = False,
             merge_on_eval: bool = False) -> list[str]:
    """Add DoRA adapter ``name`` (inactive) to every target layer; return the adapted module paths."""
    targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    paths = find_targets(model, targets)
    _inject_dora(model, name, paths, DoRAConfig(r, alpha, dropout, use_rslora, targets), merge_on_eval)
    return paths


def mark_dora_trainable(model: nn.Module, name: str, head_patterns: Iterable[str] = DEFAULT_HEAD_PATTERNS) -> list[str]:
    """Make adapter ``name``'s A, B and magnitude (+ the head; () for none) the only trainable tensors; activate it."""
    parts = [f".lora_{part}.{name}." for part in ("A", "B", "magnitude_vector")]
    return mark_named_trainable(model, _LEDGER, _KIND, name, lambda n: any(p in n for p in parts), set_active_lora,
                                head_patterns)


def _require_dora(model: nn.Module, name: str) -> Ledger:
    """The ledger, if ``name`` is a DoRA adapter (a plain LoRA one: a ValueError pointing to save_lora)."""
    ledger = require_ledger(model, _LEDGER, _KIND, name)
    if not isinstance(ledger.configs[name], DoRAConfig):
        raise ValueError(f"Adapter {name!r} is a plain LoRA adapter, not DoRA: save it with save_lora.")
    return ledger


def save_dora(model: nn.Module, name: str, directory: str | Path, head_patterns: Iterable[str] = (),
              task_type: Optional[str] = None) -> Path:
    """Write DoRA adapter ``name`` in peft's format (``use_dora: true``; + the head as peft ``modules_to_save``)."""
    ledger = _require_dora(model, name)
    config = ledger.configs[name]
    tensors: dict[str, Tensor] = {}
    fan_in_fan_out = False
    for path in ledger.paths[name]:
        layer = model.get_submodule(path)
        fan_in_fan_out |= layer.fan_in_fan_out
        prefix = f"{PEFT_PREFIX}{path}"  # peft leaves the adapter name (and the magnitude's ".weight") out
        tensors |= {f"{prefix}.lora_A.weight": layer.lora_A[name].weight,
                    f"{prefix}.lora_B.weight": layer.lora_B[name].weight,
                    f"{prefix}.lora_magnitude_vector": layer.lora_magnitude_vector[name].weight}
    return save_peft_adapter(model, directory, tensors,
                             peft_lora_config(config, fan_in_fan_out, task_type, use_dora=True), head_patterns,
                             "peft LoRA/DoRA")


def load_dora(model: nn.Module, directory: str | Path, name: Optional[str] = None) -> str:
    """Add a DoRA saved in peft's format (by :func:`save_dora` or peft) as ``name`` (default "default").

    The adapted layers are read from the tensor keys; the head (peft ``modules_to_save``) is
    copied into the model. Like :func:`add_dora`, the adapter is not activated.
    """
    directory = Path(directory)
    meta = read_saved_config(directory, "adapter_config.json", "adapter_model.safetensors",
                             "peft DoRA (save_dora or peft)", ("peft_type", "r", "lora_alpha"))
    if meta.get("peft_type") != "LORA":
        raise ValueError(f"Not a LoRA/DoRA adapter: peft_type is {meta.get('peft_type')!r}")
    if meta.get("use_dora") is not True:
        raise ValueError(f"{directory} holds a plain LoRA adapter (use_dora is {meta.get('use_dora')!r}), not DoRA: "
                         f"load it with load_lora.")
    unsupported = {k: meta.get(k) for k in ("rank_pattern", "alpha_pattern", "lora_bias") if meta.get(k)} | (
        {"bias": meta["bias"]} if meta.get("bias", "none") != "none" else {})
    if unsupported:
        raise ValueError(f"This DoRA uses options course_lib does not implement: {unsupported}")
    saved: dict[tuple[str, str], Tensor] = {}
    head: dict[str, Tensor] = {}
    for key, t in read_tensors(directory / "adapter_model.safetensors").items():
        if (m := _PEFT_KEY.match(key)) is not None:
            saved[(m.group(1), m.group(2))] = t
        elif (m := _MAGNITUDE_KEY.match(key)) is not None:
            saved[(m.group(1), "magnitude")] = t
        elif key.startswith(PEFT_PREFIX):
            head[key[len(PEFT_PREFIX):]] = t
        else:
            raise ValueError(f"Unexpected key {key!r}: peft keys start with {PEFT_PREFIX!r}")
    paths = list(dict.fromkeys(path for path, _ in saved))
    for path in paths:
        missing = [part for part in ("A", "B", "magnitude") if (path, part) not in saved]
        if missing:
            raise ValueError(f"{path!r} needs lora_A, lora_B and lora_magnitude_vector tensors; it lacks {missing}")
    candidates = set(_candidates(model))
    absent = [p for p in paths if p not in candidates]
    if absent:
        raise ValueError(f"The saved DoRA adapts layers this model lacks: {absent[:4]}; "
                         f"this model has {suffix_names(sorted(candidates))}")
    config = DoRAConfig(meta["r"], meta["lora_alpha"], meta.get("lora_dropout", 0.0), meta.get("use_rslora", False),
                        meta.get("target_modules") or [])
    name = name or "default"
    _inject_dora(model, name, paths, config, merge_on_eval=False)
    existing = dict(model.named_parameters()) | dict(model.named_buffers())
    targets: dict = {}
    for path, part in saved:
        layer = model.get_submodule(path)
        holder = layer.lora_magnitude_vector if part == "magnitude" else getattr(layer, f"lora_{part}")
        targets[(path, part)] = holder[name].weight
    targets |= {k: existing.get(k) for k in head}
    everything = {**saved, **head}
    wrong = [f"{k}: saved {tuple(t.shape)}, model {None if targets[k] is None else tuple(targets[k].shape)}"
             for k, t in everything.items() if targets[k] is None or targets[k].shape != t.shape]
    if wrong:
        delete_lora(model, name)
        raise ValueError("Saved tensors do not fit this model: " + "; ".join(wrong[:4]))
    with torch.no_grad():
        for key, t in everything.items():
            targets[key].copy_(t.to(targets[key].device, targets[key].dtype))
    return name
