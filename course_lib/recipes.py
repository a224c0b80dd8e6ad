"""Each course method as a ``prepare(model)`` step: add the method to a fresh classifier and mark what trains.

These are the same library calls the method notebooks show one by one; :func:`~course_lib.finetune.run_finetune`
and the real track's :class:`~course_lib.benchmark.MethodSpec` (by recipe name) take them, so every notebook trains a
method the same way. Each returns the model to train (prompt tuning returns its wrapper).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from torch import nn

from .peft.adapters import AdapterConfig, add_adapter, load_adapter, mark_adapter_trainable
from .peft.dora import add_dora
from .peft.fusion import add_fusion, mark_fusion_trainable
from .peft.ia3 import add_ia3, mark_ia3_trainable
from .peft.lora import add_lora, mark_lora_trainable
from .peft.prefix_tuning import add_prefix_tuning, mark_prefix_trainable
from .peft.prompt_tuning import add_prompt_tuning, mark_prompt_trainable
from .peft.qlora import prepare_qlora

Prepare = Callable[[nn.Module], nn.Module]


def full_finetuning() -> Prepare:
    """Every parameter trains."""
    def prepare(model: nn.Module) -> nn.Module:
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    return prepare


def selective(select: Callable[[nn.Module], Any]) -> Prepare:
    """A freezing function (head_only, bitfit, a top-k choice, ...) decides what trains."""
    def prepare(model: nn.Module) -> nn.Module:
        select(model)
        return model
    return prepare


def adapter(placement: str = "pfeiffer", reduction_factor: Optional[int] = 16, name: str = "task",
            **config: Any) -> Prepare:
    """A bottleneck adapter ``name`` (AdapterConfig fields as keywords) trains with the head."""
    def prepare(model: nn.Module) -> nn.Module:
        add_adapter(model, name, AdapterConfig(placement=placement, reduction_factor=reduction_factor, **config))
        mark_adapter_trainable(model, name)
        return model
    return prepare


def lora(target_modules: str | Iterable[str] = ("q_proj", "v_proj"), r: int = 8, alpha: Optional[float] = None,
         name: str = "task", **options: Any) -> Prepare:
    """LoRA ``name`` on the target layers (alpha defaults to 2r) trains with the head."""
    targets = target_modules if isinstance(target_modules, str) else list(target_modules)

    def prepare(model: nn.Module) -> nn.Module:
        add_lora(model, name, targets, r=r, alpha=alpha if alpha is not None else 2 * r, **options)
        mark_lora_trainable(model, name)
        return model
    return prepare


def dora(target_modules: str | Iterable[str] = ("q_proj", "v_proj"), r: int = 8, alpha: Optional[float] = None,
         name: str = "task") -> Prepare:
    """DoRA ``name`` (LoRA plus a learned magnitude per output) on the target layers (alpha defaults to 2r)."""
    targets = target_modules if isinstance(target_modules, str) else list(target_modules)

    def prepare(model: nn.Module) -> nn.Module:
        add_dora(model, name, targets, r=r, alpha=alpha if alpha is not None else 2 * r)
        mark_lora_trainable(model, name)  # A, B and the magnitude
        return model
    return prepare


def ia3(target_modules: str | Iterable[str] | None = None, feedforward_modules: str | Iterable[str] | None = None,
        name: str = "task") -> Prepare:
    """(IA)³ vectors ``name`` on keys, values and the FFN activation (None: peft's defaults) train with the head."""
    def prepare(model: nn.Module) -> nn.Module:
        add_ia3(model, name, target_modules, feedforward_modules)
        mark_ia3_trainable(model, name)
        return model
    return prepare


def qlora(target_modules: str | Iterable[str] = ("q_proj", "v_proj"), r: int = 8, alpha: Optional[float] = None,
          name: str = "task") -> Prepare:
    """An NF4 base with LoRA ``name`` on the target layers (alpha defaults to 2r)."""
    targets = target_modules if isinstance(target_modules, str) else list(target_modules)

    def prepare(model: nn.Module) -> nn.Module:
        prepare_qlora(model, targets, r=r, alpha=alpha if alpha is not None else 2 * r, name=name)
        return model
    return prepare


def prompt_tuning(n_virtual_tokens: int, init: str = "vocab", **options: Any) -> Prepare:
    """A soft prompt of ``n_virtual_tokens`` (+ the head) trains; returns the PromptTuningModel wrapper."""
    def prepare(model: nn.Module) -> nn.Module:
        wrapper = add_prompt_tuning(model, n_virtual_tokens, init=init, **options)
        mark_prompt_trainable(wrapper)
        return wrapper
    return prepare


def prefix_tuning(n_prefix: int, reparametrize: bool = True, **options: Any) -> Prepare:
    """Key/value prefixes in every attention layer (+ the head) train."""
    def prepare(model: nn.Module) -> nn.Module:
        add_prefix_tuning(model, n_prefix, reparametrize=reparametrize, **options)
        mark_prefix_trainable(model)
        return model
    return prepare


def adapter_fusion(sources: str | Path, adapters: Optional[Iterable[str]] = None, name: str = "fusion",
                   uniform: bool = False) -> Prepare:
    """Load saved adapters from ``sources/<name>`` (all, sorted, or ``adapters`` in order) and fuse them.

    The adapters stay frozen; the fusion layers (+ the head) train. ``uniform=True``: the ablation without attention.
    """
    def prepare(model: nn.Module) -> nn.Module:
        root = Path(sources)
        folders = ([root / a for a in adapters] if adapters is not None
                   else sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else [])
        if not folders:
            raise ValueError(f"AdapterFusion needs trained source adapters in {sources}: see real_fusion.source_adapter")
        names = [load_adapter(model, path) for path in folders]
        add_fusion(model, names, name=name, uniform=uniform)
        mark_fusion_trainable(model, name)
        return model
    return prepare
