"""The capstone's contenders on the real track: every course method on MiniLM, its family and its deployed form.

Each contender is a :class:`~course_lib.benchmark.MethodSpec` with the settings its notebook used (so the runs come
from the same cache), a family for the plots, and the form it is served in: LoRA merges into the weights (the base
architecture again), prefix tuning folds its MLP away, adapters and prompts stay as extra work on every call, and
QLoRA keeps its 4-bit base. :func:`deployed_model` builds that form for timing; latency depends on the shapes, not
on the trained values, so a fresh model is timed.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .benchmark import ALL_LINEAR, MethodSpec, adapter_spec, load_real_model, lora_spec, prefix_spec, prompt_spec, \
    real_methods
from .compare import FAMILIES
from .peft import merge_and_unload

DEPLOYED_FORMS = ("base architecture", "adapter layers", "virtual tokens", "folded prefix", "NF4 base + LoRA")


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


def contenders() -> dict[str, Contender]:
    """Every course method with its notebook's settings (02, 03, 05, 06, 07, 08), by name."""
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
        Contender(prompt_spec(24), "soft prompt", "virtual tokens"),
        Contender(prefix_spec(2, reparametrize=False), "soft prompt", "folded prefix"),
        Contender(lora_spec(quantized=True), "quantized", "NF4 base + LoRA"),
    ]
    return {c.spec.name: c for c in items}


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
