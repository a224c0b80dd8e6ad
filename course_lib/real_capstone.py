"""The capstone's contenders on the real track: every course method on MiniLM, its family and its deployed form.

Each contender is a :class:`~course_lib.benchmark.MethodSpec` with the settings its notebook used (so the runs come
from the same cache), a family for the plots, and the form it is served in: LoRA, DoRA and (IA)³ merge into the
weights (the base architecture again), prefix tuning folds its MLP away, adapters and prompts stay as extra work on
every call, and QLoRA keeps its 4-bit base. Given a profile, AdapterFusion joins: its three source adapters (notebook 04) are
trained first, and :func:`training_steps` counts their steps. :func:`deployed_model` builds each served form for
timing; latency depends on the shapes, not on the trained values, so a fresh model is timed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional

import pandas as pd
import torch
from torch import nn

from .benchmark import (ALL_LINEAR, MethodSpec, adapter_spec, dora_spec, ia3_spec, load_real_model, lora_spec,
                        prefix_spec, prompt_spec, real_methods)
from .peft import merge_and_unload
from .profiles import Profile
from .real_fusion import SOURCE_DOMAINS, fusion_spec, source_lr

FAMILIES = ("full", "selective", "adapter", "reparametrization", "rescaling", "soft prompt", "quantized")
DEPLOYED_FORMS = ("base architecture", "adapter layers", "fused adapters", "virtual tokens", "folded prefix",
                  "NF4 base + LoRA")


@dataclass(frozen=True)
class Contender:
    """A method of the capstone: its spec, its family (for the plots) and the form it is served in."""

    spec: MethodSpec
    family: str
    deployed: str

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"{self.spec.name}: family must be one of {FAMILIES}, got {self.family!r}")
        if self.deployed not in DEPLOYED_FORMS:
            raise ValueError(f"{self.spec.name}: deployed must be one of {DEPLOYED_FORMS}, got {self.deployed!r}")


def contenders(profile: Optional[Profile] = None, device: Optional[torch.device] = None,
               show_progress: bool = True) -> dict[str, Contender]:
    """Every course method with its notebook's settings (02-09), by name; AdapterFusion only given a profile."""
    base = real_methods()
    items = [
        Contender(base["full fine-tuning"], "full", "base architecture"),
        Contender(base["head only"], "selective", "base architecture"),
        Contender(base["BitFit"], "selective", "base architecture"),
        Contender(base["top-2 layers"], "selective", "base architecture"),
        Contender(adapter_spec("houlsby"), "adapter", "adapter layers"),
        Contender(adapter_spec("pfeiffer"), "adapter", "adapter layers"),
        Contender(adapter_spec("parallel"), "adapter", "adapter layers"),
        Contender(base["LoRA r=8 (q, v)"], "reparametrization", "base architecture"),
        Contender(lora_spec(r=1), "reparametrization", "base architecture"),
        Contender(lora_spec(ALL_LINEAR), "reparametrization", "base architecture"),
        Contender(dora_spec(), "reparametrization", "base architecture"),  # notebook 07: merges like LoRA
        Contender(ia3_spec(), "rescaling", "base architecture"),           # (IA)³ vectors fold into the weights
        Contender(prompt_spec(24), "soft prompt", "virtual tokens"),
        Contender(prefix_spec(2, reparametrize=False), "soft prompt", "folded prefix"),
        Contender(lora_spec(quantized=True), "quantized", "NF4 base + LoRA"),
    ]
    if profile is not None:  # the sources train at the Pfeiffer adapter's pick, as in notebook 04
        lr = source_lr(profile, device, show_progress)
        items.append(Contender(fusion_spec(SOURCE_DOMAINS, lr, profile, device, show_progress), "adapter",
                               "fused adapters"))
    return {c.spec.name: c for c in items}


def training_steps(contender: Contender, steps: int) -> int:
    """Optimizer steps the method needs: its own, plus those of every source adapter it builds on (AdapterFusion)."""
    return steps * (1 + len(contender.spec.options.get("sources", ())))


def deployed_model(contender: Contender, seed: int = 0) -> nn.Module:
    """A fresh MiniLM classifier with the contender's method in its deployed form, in eval mode (for timing)."""
    model, _ = load_real_model(2, ["negative", "positive"], seed)
    if contender.deployed == "base architecture":
        return model.eval()  # full FT, selective methods and merged LoRA all serve the unchanged architecture
    model = contender.spec.prepare()(model) or model
    if contender.deployed == "folded prefix":
        model.prefix_encoder.fold_reparametrization()
    if contender.spec.recipe == "lora":
        model = merge_and_unload(model)
    return model.eval()


def markdown_table(table: pd.DataFrame, columns: Optional[Iterable[str]] = None, digits: int = 3) -> str:
    """A results table as a GitHub-markdown table (for the README), numbers rounded to ``digits``."""
    columns = list(table.columns if columns is None else columns)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in the table; available: {list(table.columns)}")

    def fmt(value: Any) -> str:
        if value is None or isinstance(value, str):
            return "" if value is None else value
        if float(value).is_integer() and abs(value) >= 1:
            return f"{int(value):,}"
        return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:,.1f}"

    lines = ["| method | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    lines += [f"| {name} | " + " | ".join(fmt(row[c]) for c in columns) + " |" for name, row in table.iterrows()]
    return "\n".join(lines)
