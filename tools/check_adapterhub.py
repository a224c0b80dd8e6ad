"""Compare course_lib's adapter presets and AdapterFusion with AdapterHub's ``adapters`` library, weight for weight.

AdapterHub pins its own transformers version, so run this in a separate environment, not the course's:

    python -m venv /tmp/ah && /tmp/ah/bin/pip install torch adapters==1.3.0
    /tmp/ah/bin/python tools/check_adapterhub.py

It builds one small random BERT, adds the same adapter to a copy through AdapterHub (its config of the same name)
and through course_lib, copies AdapterHub's weights into course_lib's, and prints the largest difference of the
eval-mode logits. The test suite encodes the same formulas by hand (tests/test_adapter_reference.py).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PRESETS = {"pfeiffer": "SeqBnConfig", "houlsby": "DoubleSeqBnConfig", "parallel": "ParBnConfig"}
SITES = {"attention.output.dense": "attention.output", "output.dense": "output"}  # course site -> hub module


def tiny_bert(seed: int = 0):
    """A randomly initialised 2-layer BERT classifier (no download)."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, num_labels=2)
    return BertForSequenceClassification(config).eval()


@torch.no_grad()
def copy_adapter(hub, ours, name: str) -> int:
    """Copy AdapterHub adapter ``name``'s weights into course_lib's sites; return the number of sites."""
    from course_lib.peft.adapters import adapter_sites

    count = 0
    for path, site in adapter_sites(ours).items():
        if name not in site.adapters:
            continue
        layer, suffix = next((path[:-len(s) - 1], s) for s in SITES if path.endswith(s))
        block = hub.get_submodule(f"{layer}.{SITES[suffix]}")
        source = block.adapters[name]
        site.adapters[name].down.load_state_dict(source.adapter_down[0].state_dict())
        site.adapters[name].up.load_state_dict(source.adapter_up.state_dict())
        count += 1
    return count


def check_preset(placement: str, ids: torch.Tensor) -> tuple[float, float]:
    """Largest |logit difference| between AdapterHub's preset and course_lib's, with AdapterHub's random weights."""
    import adapters
    from course_lib.peft.adapters import AdapterConfig, add_adapter, set_active_adapters

    base = tiny_bert()
    hub, ours = copy.deepcopy(base), copy.deepcopy(base)
    adapters.init(hub)
    hub.add_adapter("a", config=getattr(adapters, PRESETS[placement])(reduction_factor=4))
    hub.set_active_adapters("a")
    with torch.no_grad():  # AdapterHub's parallel init starts "up" at zero: make every adapter non-trivial
        for name, param in hub.named_parameters():
            if ".adapters.a." in name:
                param.normal_(0.0, 0.3)
    add_adapter(ours, "a", AdapterConfig(placement=placement, reduction_factor=4))
    set_active_adapters(ours, "a")
    sites = copy_adapter(hub, ours, "a")
    assert sites == (4 if placement == "houlsby" else 2), sites
    return compare(base, hub, ours, ids)


def compare(base, hub, ours, ids: torch.Tensor) -> tuple[float, float]:
    """(largest |hub - ours| logit difference, largest |hub - base|: how much the adapters change the model)."""
    with torch.no_grad():
        hub_logits = hub.eval()(ids).logits
        return ((hub_logits - ours.eval()(ids).logits).abs().max().item(),
                (hub_logits - base(ids).logits).abs().max().item())


def check_fusion(ids: torch.Tensor) -> tuple[float, float]:
    """The same for a dynamic AdapterFusion of two Pfeiffer (SeqBn) adapters, with trained-looking weights."""
    import adapters
    from adapters.composition import Fuse
    from course_lib.peft.adapters import AdapterConfig, add_adapter, adapter_sites
    from course_lib.peft.fusion import add_fusion, set_active_fusion

    base = tiny_bert()
    hub, ours = copy.deepcopy(base), copy.deepcopy(base)
    adapters.init(hub)
    for name in ("a", "b"):
        hub.add_adapter(name, config=adapters.SeqBnConfig(reduction_factor=4))
        add_adapter(ours, name, AdapterConfig(placement="pfeiffer", reduction_factor=4))
    hub.add_adapter_fusion(Fuse("a", "b"))
    hub.set_active_adapters(Fuse("a", "b"))
    with torch.no_grad():
        for name, param in hub.named_parameters():
            if ".adapters." in name or "adapter_fusion_layer" in name:
                param.normal_(0.0, 0.3)
    for name in ("a", "b"):
        copy_adapter(hub, ours, name)
    add_fusion(ours, ["a", "b"], "f")
    set_active_fusion(ours, "f")
    with torch.no_grad():
        for path, site in adapter_sites(ours).items():
            layer = path[:-len(".output.dense")]
            source = hub.get_submodule(f"{layer}.output").adapter_fusion_layer["a,b"]
            site.fusions["f"].load_state_dict(source.state_dict(), strict=False)
            site.fusions["f"].value.weight.copy_(source.value.weight)
    return compare(base, hub, ours, ids)


def main() -> int:
    import adapters

    ids = torch.randint(1, 100, (3, 9), generator=torch.Generator().manual_seed(0))
    results = {f"{placement} vs {PRESETS[placement]}": check_preset(placement, ids) for placement in PRESETS}
    results["AdapterFusion vs Fuse (dynamic)"] = check_fusion(ids)
    print(f"adapters {adapters.__version__}, eval mode, same weights: largest |logit difference| to AdapterHub "
          f"(and, for scale, what the adapters change)")
    for label, (diff, effect) in results.items():
        print(f"  {label:<36} {diff:.2e}   (adapters move the logits by {effect:.2e})")
    return 0 if all(diff < 1e-5 < effect for diff, effect in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
