"""Serving many LoRAs at once: each row of one batch runs with its own adapter (peft's ``adapter_names=``).

One frozen base model can hold many small adapters (one per customer or task). Instead of one batch per
adapter, a *mixed batch* sends every request through the base layer together and adds each row's own update::

    h_i = W0 x_i + b + s_{n_i} B_{n_i} A_{n_i} x_i,      n_i = adapter_names[i]   ("__base__": no update)

Per layer the rows that share an adapter are gathered, sent through that adapter's A and B once, and their
updates added back at those rows: the cost is one base forward plus one small LoRA forward per distinct adapter.
A layer that an adapter does not reach adds nothing for its rows (like peft). Merged adapters are refused
(the merged update would reach every row), and so is training mode (as in peft: serving is inference).

``with mixed_batch(model, ["sst", "__base__", "nli"]): model(ids)`` gives row 0 adapter "sst", row 1 the base
model, row 2 adapter "nli" -- the same outputs as running each row alone with ``set_active_lora`` (and as
peft's ``model(ids, adapter_names=[...])``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn

from .lora import LoRALinear, _ledger, lora_layers

BASE = "__base__"  # the row runs the base model, no adapter (peft's name for it)


@contextmanager
def mixed_batch(model: nn.Module, adapter_names: list[str]) -> Iterator[nn.Module]:
    """Inside the block, row i of every batch uses LoRA adapter ``adapter_names[i]`` ("__base__": none)."""
    if isinstance(adapter_names, str) or not all(isinstance(n, str) for n in adapter_names):
        raise ValueError(f"adapter_names must be a list of adapter names, one per row, got {adapter_names!r}")
    names = list(adapter_names)
    if not names:
        raise ValueError("adapter_names is empty: give one adapter name (or '__base__') per row of the batch")
    known = _ledger(model).names() if _ledger(model) is not None else []
    if BASE in known:
        raise ValueError(f"A LoRA adapter is named {BASE!r}, which mixed_batch reserves for 'no adapter': rename it")
    unknown = sorted({n for n in names if n != BASE and n not in known})
    if unknown:
        raise ValueError(f"No LoRA adapter named {unknown}; this model has: {known} (and {BASE!r} for the base model)")
    layers = list(lora_layers(model).values())
    variants = sorted({type(layer).__name__ for layer in layers if type(layer).forward is not LoRALinear.forward})
    if variants:
        raise ValueError(f"mixed_batch serves plain LoRA layers; this model has {variants}, whose own forward would "
                         f"ignore the per-row adapters (peft refuses DoRA here too).")
    merged = sorted({name for layer in layers for name in layer.merged})
    if merged:
        raise ValueError(f"LoRA adapter(s) {merged} are merged into the base weights, so they would reach every "
                         f"row: call unmerge_lora(model) before using mixed_batch.")
    if model.training:
        raise ValueError("mixed_batch is for inference: call model.eval() first (dropout would differ per row).")
    previous = [layer.row_adapters for layer in layers]
    for layer in layers:
        layer.row_adapters = names
    try:
        yield model
    finally:
        for layer, before in zip(layers, previous):
            layer.row_adapters = before
