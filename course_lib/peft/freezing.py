"""Selective fine-tuning: freeze everything, then unfreeze by name, predicate, layer or bias (BitFit).

Every function works on parameter *names*, so the same calls serve the course's
models (``encoder.layers.3.attn.q_proj.weight``) and Hugging Face BERT models
(``bert.encoder.layer.3.attention.self.query.weight``). A pattern that matches
nothing is an error that shows what names exist, never a silent no-op.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

from torch import nn

# Head modules of the models the course uses: ours ("classifier"), HF BERT ("classifier", "bert.pooler").
DEFAULT_HEAD_PATTERNS = (r"^classifier\.",)
LAYER_INDEX = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks)\.(\d+)\.")


def _names_preview(model: nn.Module, limit: int = 12) -> str:
    names = [n for n, _ in model.named_parameters()]
    shown = ", ".join(names[:limit])
    return f"{shown}{', ...' if len(names) > limit else ''} ({len(names)} tensors)"


def freeze_all(model: nn.Module) -> nn.Module:
    """Set requires_grad=False on every parameter; returns the model."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def unfreeze_where(model: nn.Module, predicate: Callable[[str, nn.Parameter], bool],
                   what: str = "the predicate") -> list[str]:
    """Unfreeze the parameters for which ``predicate(name, param)`` is true; return their names."""
    chosen = [n for n, p in model.named_parameters() if predicate(n, p)]
    if not chosen:
        raise ValueError(f"{what} matched no parameter. Parameter names look like: {_names_preview(model)}")
    params = dict(model.named_parameters())
    for n in chosen:
        params[n].requires_grad_(True)
    return chosen


def unfreeze(model: nn.Module, patterns: str | Iterable[str]) -> list[str]:
    """Unfreeze parameters whose name matches any regex in ``patterns`` (re.search); each must match something."""
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    if not patterns:
        raise ValueError("Give at least one name pattern to unfreeze.")
    names = [n for n, _ in model.named_parameters()]
    for pattern in patterns:
        if not any(re.search(pattern, n) for n in names):
            raise ValueError(f"Pattern {pattern!r} matched no parameter. Parameter names look like: "
                             f"{_names_preview(model)}")
    return unfreeze_where(model, lambda n, _: any(re.search(p, n) for p in patterns), what=str(patterns))


def layer_indices(model: nn.Module) -> list[int]:
    """The sorted transformer-layer indices found in parameter names (``layers.3.`` / ``layer.3.``)."""
    found = {int(m.group(1)) for n, _ in model.named_parameters() if (m := LAYER_INDEX.search(n))}
    if not found:
        raise ValueError(f"No numbered layers ('layers.N.' or 'layer.N.') in the parameter names: "
                         f"{_names_preview(model)}")
    return sorted(found)


def head_only(model: nn.Module, head_patterns: Iterable[str] = DEFAULT_HEAD_PATTERNS) -> list[str]:
    """Linear probe: freeze the whole model, train only the task head."""
    freeze_all(model)
    return unfreeze(model, head_patterns)


def top_k_layers(model: nn.Module, k: int, head_patterns: Iterable[str] = DEFAULT_HEAD_PATTERNS) -> list[str]:
    """Train the top ``k`` transformer layers and the head (the LoRA paper's FT^Top2 for k=2)."""
    layers = layer_indices(model)
    if not 0 <= k <= len(layers):
        raise ValueError(f"k must be between 0 and the number of layers ({len(layers)}), got {k}.")
    top = set(layers[len(layers) - k:])
    freeze_all(model)
    names = unfreeze(model, head_patterns)
    if k:
        names += unfreeze_where(model, lambda n, _: (m := LAYER_INDEX.search(n)) is not None
                                and int(m.group(1)) in top, what=f"the top {k} layers")
    return names


def bitfit(model: nn.Module, head_patterns: Iterable[str] = DEFAULT_HEAD_PATTERNS) -> list[str]:
    """BitFit: train only the bias terms (plus the task head, which is new and must be learned)."""
    freeze_all(model)
    names = unfreeze(model, head_patterns)
    return names + unfreeze_where(model, lambda n, _: n.endswith(".bias") and n not in names, what="'.bias'")


def trainable_names(model: nn.Module) -> list[str]:
    """Names of the parameters that will be trained."""
    return [n for n, p in model.named_parameters() if p.requires_grad]
