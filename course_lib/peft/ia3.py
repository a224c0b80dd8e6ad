"""(IA)³ (Liu et al. 2022, T-Few): learned vectors that rescale the keys, the values and the FFN activation.

"Infused Adapter by Inhibiting and Amplifying Inner Activations" trains one vector per adapted layer and
multiplies it elementwise into an activation; every weight of the model stays frozen::

    K' = l_k ⊙ K,    V' = l_v ⊙ V,    FFN(x) = W_down (l_ff ⊙ h),    h = act(W_up x)

Each vector starts at **ones**, so a fresh (IA)³ model is exactly the base model. It is the smallest of the
course's methods: a BERT layer of width ``d`` with FFN width ``4d`` adds ``d + d + 4d`` numbers.

Like peft, a target layer is one of two kinds:

* a plain target (keys, values) scales its **output**: ``y = l ⊙ (W x + b)``, vector shape ``(out, 1)``;
* a *feedforward* target (the FFN down projection, listed in ``feedforward_modules``) scales its **input**,
  which is the FFN activation ``h``: ``y = W (l ⊙ h) + b``, vector shape ``(1, in)``.

Both fold into the weight (*merge*): an output scale is ``W <- diag(l) W`` and ``b <- l ⊙ b``; an input scale
is ``W <- W diag(l)`` with the bias untouched. *Unmerge* divides by the same vector again, so a vector with
zeros cannot be unmerged: :func:`merge_ia3` refuses a merge it could not undo (use :func:`unload_ia3`, which
never needs to undo it). Several active adapters multiply their vectors.

The model's code is never edited: each target layer is replaced by an :class:`IA3Linear` that keeps the
original as ``base_layer`` and holds named vectors in ``ia3_l`` (an ``nn.ParameterDict``), peft's layout.
A new adapter is *inactive* until :func:`set_active_ia3` (or :func:`mark_ia3_trainable`) switches it on.
:func:`save_ia3` / :func:`load_ia3` use peft's file format (``adapter_config.json`` with ``peft_type``
"IA3" and ``adapter_model.safetensors`` with keys ``base_model.model.<module path>.ia3_l``), so an (IA)³
trained here loads with ``peft.PeftModel.from_pretrained`` and vice versa.

Two peft rules are kept on purpose, because a saved adapter must mean the same thing in both libraries:
a list of ``feedforward_modules`` marks a targeted path feedforward when the path merely *ends with* one of
the names (no dot needed), and BERT's default ``"output.dense"`` matches the attention output projection
(``attention.output.dense``) as well as the FFN down projection (``layer.N.output.dense``): both then scale
their input. Target the FFN alone with a regex such as ``r".*\\.(key|value)|.*layer\\.\\d+\\.output\\.dense"``.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

import torch
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from ..checkpoints import read_saved_config, read_tensors
from .freezing import DEFAULT_HEAD_PATTERNS
from .spine import (PEFT_PREFIX, Ledger, activate_layers, delete_named, get_ledger, layers_of_type,
                    ledger_active, ledger_names, mark_named_trainable, require_ledger, save_peft_adapter, set_submodule,
                    suffix_names, unload_layers)
from .spine import find_targets as _find_paths

_PEFT_KEY = re.compile(r"^base_model\.model\.(.+)\.ia3_l$")

# family -> (target_modules, feedforward_modules): peft's defaults for a few families, plus the course's models
IA3_DEFAULTS: dict[str, tuple[list[str], list[str]]] = {
    "course": (["k_proj", "v_proj", "fc2"], ["fc2"]),
    "bert": (["key", "value", "output.dense"], ["output.dense"]),
    "roberta": (["key", "value", "output.dense"], ["output.dense"]),
    "gpt2": (["c_attn", "mlp.c_proj"], ["mlp.c_proj"]),
    "t5": (["k", "v", "wo"], ["wo"]),
    "opt": (["q_proj", "k_proj", "fc2"], ["fc2"]),
    "bart": (["q_proj", "v_proj", "fc2"], ["fc2"]),
    "llama": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
    "mistral": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
    "qwen2": (["q_proj", "v_proj", "down_proj"], ["down_proj"]),
}


def _features(base: nn.Module) -> tuple[int, int]:
    """(in_features, out_features) of an nn.Linear or a GPT-2 Conv1D (weight stored as in x out)."""
    if isinstance(base, Conv1D):
        return base.weight.shape[0], base.weight.shape[1]
    if isinstance(base, nn.Linear):
        return base.in_features, base.out_features
    raise TypeError(f"(IA)³ wraps nn.Linear or transformers Conv1D layers, got {type(base).__name__}")


class IA3Linear(nn.Module):
    """A base layer whose output (or, ``is_feedforward``, input) is rescaled by named learned vectors."""

    def __init__(self, base: nn.Module, is_feedforward: bool, name: str = "default") -> None:
        super().__init__()
        self.in_features, self.out_features = _features(base)
        self.base_layer = base
        self.is_feedforward = is_feedforward          # True: scale the input (FFN activation), else the output
        self.fan_in_fan_out = isinstance(base, Conv1D)  # weight is in x out: the scale goes on the other axis
        self.ia3_l = nn.ParameterDict()
        self.active: list[str] = []  # vectors used by forward (and merged by merge())
        self.merged: dict[str, Tensor] = {}  # name -> the vector it was merged with (unmerge divides by that)
        self.disabled = False        # True: forward runs the base layer only
        self.add_adapter(name)
        self.active = [name]

    def add_adapter(self, name: str) -> None:
        """Add vector ``name`` (inactive), all ones: ``(1, in)`` for a feedforward layer, else ``(out, 1)``."""
        if name in self.ia3_l:
            raise ValueError(f"This layer already has an (IA)³ adapter named {name!r}")
        shape = (1, self.in_features) if self.is_feedforward else (self.out_features, 1)
        weight = self.base_layer.weight
        self.ia3_l[name] = nn.Parameter(torch.ones(shape, device=weight.device, dtype=weight.dtype))

    def delete_adapter(self, name: str) -> None:
        """Remove vector ``name`` (unmerging first if it is merged)."""
        if name in self.merged:
            self.unmerge()
        del self.ia3_l[name]
        self.active = [n for n in self.active if n != name]

    def set_active(self, names: list[str]) -> None:
        """Use these vectors (the ones this layer has); the layer must not be merged."""
        names = [n for n in names if n in self.ia3_l]
        if self.merged and names != self.active:
            raise RuntimeError(f"Layer has merged (IA)³ adapters {list(self.merged)}: unmerge before switching.")
        self.active = names

    def _weight_scale(self, vector: Tensor) -> Tensor:
        """The vector shaped to multiply ``base_layer.weight`` (out x in, or in x out for Conv1D)."""
        return vector.T if self.fan_in_fan_out else vector

    def _fold(self, weight: Tensor, bias: Optional[Tensor], vector: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        """``weight`` (and ``bias``, when the output is scaled) with ``vector`` folded in."""
        folded = (weight * self._weight_scale(vector)).to(weight.dtype)
        if self.is_feedforward or bias is None:  # W (l ⊙ h) + b: the bias is not scaled
            return folded, bias
        return folded, (bias * vector.reshape(bias.shape)).to(bias.dtype)  # l ⊙ (W x + b): scaled too

    def _unfold(self, weight: Tensor, bias: Optional[Tensor], vector: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        """The inverse of :meth:`_fold`: divide ``vector`` out again."""
        unfolded = (weight / self._weight_scale(vector)).to(weight.dtype)
        if self.is_feedforward or bias is None:
            return unfolded, bias
        return unfolded, (bias / vector.reshape(bias.shape)).to(bias.dtype)

    @staticmethod
    def _same(restored: Tensor, original: Tensor) -> bool:
        """True if ``restored`` equals ``original`` up to a few roundings of its dtype."""
        info = torch.finfo(original.dtype)
        return bool(torch.isfinite(restored).all()) and torch.allclose(restored, original, rtol=4 * info.eps,
                                                                       atol=4 * info.tiny)

    @torch.no_grad()
    def _folded_all(self, reversible: bool) -> tuple[Tensor, Optional[Tensor], dict[str, Tensor]]:
        """The weight and bias with every active, unmerged vector folded in, and those vectors (nothing is changed).

        With ``reversible``, a vector whose merge :meth:`unmerge` could not undo (a zero, a value that is not
        finite or that makes the merged weight underflow) is a ValueError.
        """
        base = self.base_layer
        weight, bias = base.weight.detach(), None if base.bias is None else base.bias.detach()
        new: dict[str, Tensor] = {}
        for name in self.active:
            if name in self.merged:
                continue
            vector = self.ia3_l[name].detach().clone()
            folded, folded_bias = self._fold(weight, bias, vector)
            if reversible:
                back, back_bias = self._unfold(folded, folded_bias, vector)
                if not self._same(back, weight) or (bias is not None and not self._same(back_bias, bias)):
                    raise ValueError(
                        f"Cannot merge (IA)³ adapter {name!r} reversibly: unmerge divides by the vector, and this one "
                        f"(smallest |l| = {vector.abs().min().item():.3g}) has entries that are zero, not finite, or "
                        f"that make the merged weight underflow, so the base weight could not be restored. Keep it "
                        f"unmerged (forward already scales), or call unload_ia3(model) for a merged plain model.")
            weight, bias, new[name] = folded, folded_bias, vector
        return weight, bias, new

    def check_merge(self) -> None:
        """A ValueError (and no change) if :meth:`merge` could not be undone by :meth:`unmerge`."""
        self._folded_all(reversible=True)

    @torch.no_grad()
    def merge(self, reversible: bool = True) -> None:
        """Fold the active vectors into the base weight (and bias); already merged ones are skipped.

        With ``reversible`` (the default) a merge that could not be undone is refused (see :meth:`check_merge`).
        """
        weight, bias, new = self._folded_all(reversible)
        if new:
            self.base_layer.weight.copy_(weight)
            if bias is not None:
                self.base_layer.bias.copy_(bias)
            self.merged.update(new)

    @torch.no_grad()
    def unmerge(self) -> None:
        """Divide every merged vector out again (newest first), with the values it was merged with."""
        base = self.base_layer
        while self.merged:
            vector = self.merged.pop(list(self.merged)[-1])
            weight, bias = self._unfold(base.weight, base.bias, vector)
            base.weight.copy_(weight)
            if bias is not None:
                base.bias.copy_(bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.training and torch.is_grad_enabled() and any(self.ia3_l[n].requires_grad for n in self.merged):
            raise RuntimeError(f"(IA)³ adapter(s) {list(self.merged)} are merged into the base weight, so a training "
                               f"step would not update them. Call unmerge_ia3(model) before training.")
        if self.disabled:
            if self.merged:
                raise RuntimeError("(IA)³ is disabled but merged into the weight: unmerge first.")
            return self.base_layer(x)
        pending = [self.ia3_l[n] for n in self.active if n not in self.merged]  # merged ones are in the weight
        if not pending:
            return self.base_layer(x)
        scale = pending[0].flatten()
        for vector in pending[1:]:
            scale = scale * vector.flatten()  # several adapters: their vectors multiply
        if self.is_feedforward:
            return self.base_layer((x.to(scale.dtype) * scale).to(x.dtype))
        out = self.base_layer(x)
        return (out * scale).to(out.dtype)

    def extra_repr(self) -> str:
        return f"is_feedforward={self.is_feedforward}, active={self.active}, merged={list(self.merged)}"


@dataclass
class IA3Config:
    """One (IA)³ adapter's choices (stored on the model): what it targets and which targets are feedforward."""

    target_modules: str | list[str] = field(default_factory=list)
    feedforward_modules: str | list[str] = field(default_factory=list)


_LEDGER, _KIND = "_course_ia3", "(IA)³ adapter"
_TARGETS = "nn.Linear/Conv1D"


def _ledger(model: nn.Module, create: bool = False) -> Optional[Ledger]:
    return get_ledger(model, _LEDGER, _KIND, create)


def ia3_layers(model: nn.Module) -> dict[str, IA3Linear]:
    """Every IA3Linear in the model, by module path."""
    return layers_of_type(model, IA3Linear)


def _candidates(model: nn.Module) -> list[str]:
    """Paths of the layers (IA)³ can target: nn.Linear / Conv1D (or IA3Linear), not the base layers inside."""
    wrapped = list(ia3_layers(model))
    return [n for n, m in model.named_modules() if n and isinstance(m, (nn.Linear, Conv1D, IA3Linear))
            and not any(n.startswith(w + ".") for w in wrapped)]


def find_targets(model: nn.Module, target_modules: str | Iterable[str]) -> list[str]:
    """Paths matched like peft: a str is a regex (fullmatch on the path), a list holds names or path suffixes."""
    return _find_paths(_candidates(model), target_modules, _TARGETS)


def is_feedforward(path: str, feedforward_modules: str | Iterable[str]) -> bool:
    """peft's rule: a regex must fullmatch the path; a list entry only has to be an ending of it (no dot needed)."""
    if isinstance(feedforward_modules, str):
        return re.fullmatch(feedforward_modules, path) is not None
    return any(path.endswith(name) for name in feedforward_modules)


def model_family(model: nn.Module) -> Optional[str]:
    """The key of IA3_DEFAULTS for this model ("course" for course_lib's models), or None."""
    if type(model).__module__.startswith("course_lib."):
        return "course"
    family = getattr(getattr(model, "config", None), "model_type", None)
    return family if family in IA3_DEFAULTS else None


def _resolve(model: nn.Module, target_modules: str | Iterable[str] | None,
             feedforward_modules: str | Iterable[str] | None) -> tuple[IA3Config, list[str]]:
    """The config, with what was left as None taken from IA3_DEFAULTS (like peft's per-model table), and the
    targeted paths. A default feedforward list keeps only the names that pick a targeted layer."""
    family = model_family(model)
    if (target_modules is None or feedforward_modules is None) and family is None:
        missing = "target_modules" if target_modules is None else "feedforward_modules"
        raise ValueError(f"No (IA)³ defaults for a {type(model).__name__} (known families: {sorted(IA3_DEFAULTS)}): "
                         f"give {missing} (feedforward_modules=[] when no target is feedforward). Layers that can be "
                         f"targeted ({_TARGETS}, by suffix): {suffix_names(_candidates(model))}")
    targets = IA3_DEFAULTS[family][0] if target_modules is None else target_modules
    targets = targets if isinstance(targets, str) else list(targets)
    paths = find_targets(model, targets)
    if feedforward_modules is None:
        feedforward = [f for f in IA3_DEFAULTS[family][1] if any(is_feedforward(p, [f]) for p in paths)]
    else:
        feedforward = feedforward_modules if isinstance(feedforward_modules, str) else list(feedforward_modules)
    return IA3Config(targets, feedforward), paths


def _check_feedforward(config: IA3Config, paths: list[str]) -> None:
    """peft's rule (a list of feedforward names must be a subset of a list of targets), and each feedforward
    name or regex must pick at least one targeted layer (else it is a typo: it would change nothing)."""
    targets, feedforward = config.target_modules, config.feedforward_modules
    if isinstance(feedforward, list) and isinstance(targets, list):
        outside = [f for f in feedforward if f not in targets]
        if outside:
            raise ValueError(f"feedforward_modules must be a subset of target_modules (as in peft): {outside} "
                             f"{'is' if len(outside) == 1 else 'are'} not in target_modules {targets}.")
    if isinstance(feedforward, str):
        unused = [] if any(is_feedforward(p, feedforward) for p in paths) else [feedforward]
    else:
        unused = [f for f in feedforward if not any(is_feedforward(p, [f]) for p in paths)]
    if unused:
        raise ValueError(f"feedforward_modules {unused} selected none of the targeted layers "
                         f"{suffix_names(paths)}; a feedforward module must also be targeted.")


def _inject(model: nn.Module, name: str, paths: list[str], config: IA3Config) -> None:
    """Give every layer in ``paths`` vector ``name`` (wrapping plain layers in an IA3Linear); validate first."""
    (_ledger(model) or Ledger(_KIND)).require_new(name)
    kinds = {path: is_feedforward(path, config.feedforward_modules) for path in paths}
    for path in paths:  # everywhere, before changing anything
        module = model.get_submodule(path)
        if isinstance(module, IA3Linear) and module.is_feedforward != kinds[path]:
            raise ValueError(f"{path!r} already scales its {'input' if module.is_feedforward else 'output'} for "
                             f"(IA)³ adapters {list(module.ia3_l)}; adapter {name!r} would scale its "
                             f"{'input' if kinds[path] else 'output'}. Give both the same feedforward_modules.")
    for path in paths:
        module = model.get_submodule(path)
        if isinstance(module, IA3Linear):
            module.add_adapter(name)
        else:
            layer = IA3Linear(module, kinds[path], name=name)
            layer.active = []  # inactive until set_active_ia3
            layer.train(module.training)
            set_submodule(model, path, layer)
    _ledger(model, create=True).add(name, config, paths)


def add_ia3(model: nn.Module, name: str = "default", target_modules: str | Iterable[str] | None = None,
            feedforward_modules: str | Iterable[str] | None = None) -> list[str]:
    """Add (IA)³ vectors ``name`` (ones, inactive) to every target layer; return the adapted module paths."""
    config, paths = _resolve(model, target_modules, feedforward_modules)
    _check_feedforward(config, paths)
    _inject(model, name, paths, config)
    return paths


def ia3_param_count(model: nn.Module, name: str) -> int:
    """Parameters adapter ``name`` adds: ``out_features`` per output-scaled layer, ``in_features`` per feedforward."""
    ledger = require_ledger(model, _LEDGER, _KIND, name)
    return sum(model.get_submodule(path).ia3_l[name].numel() for path in ledger.paths[name])


def list_ia3(model: nn.Module) -> list[str]:
    """Names of the model's (IA)³ adapters, in the order they were added."""
    return ledger_names(model, _LEDGER)


def active_ia3(model: nn.Module) -> list[str]:
    """Names of the (IA)³ adapters in use."""
    return ledger_active(model, _LEDGER)


def set_active_ia3(model: nn.Module, names: str | list[str] | None) -> None:
    """Use one adapter, several (their vectors multiply), or none (None: the base model)."""
    activate_layers(model, _LEDGER, _KIND, ia3_layers(model).values(), names)


def mark_ia3_trainable(model: nn.Module, name: str, head_patterns: Iterable[str] = DEFAULT_HEAD_PATTERNS) -> list[str]:
    """Make adapter ``name``'s vectors (+ the head; () for none) the only trainable tensors and activate it."""
    return mark_named_trainable(model, _LEDGER, _KIND, name, lambda n: n.endswith(f".ia3_l.{name}"),
                                set_active_ia3, head_patterns)


@contextmanager
def disable_ia3(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block the model is the base model (merged layers are unmerged, then merged back)."""
    layers = list(ia3_layers(model).values())
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
                layer.merge(reversible=False)  # it was merged before, with the same vectors


def merge_ia3(model: nn.Module) -> None:
    """Fold the active vectors into the base weights of every (IA)³ layer; refused (nothing changes) if any
    merge could not be undone by :func:`unmerge_ia3` (a vector with zeros: use :func:`unload_ia3`)."""
    layers = list(ia3_layers(model).values())
    for layer in layers:  # check everywhere first: all or nothing
        layer.check_merge()
    for layer in layers:
        layer.merge(reversible=False)


def unmerge_ia3(model: nn.Module) -> None:
    """Undo :func:`merge_ia3` everywhere."""
    for layer in ia3_layers(model).values():
        layer.unmerge()


def unload_ia3(model: nn.Module, merge: bool = True) -> nn.Module:
    """Put the plain base layers back, the active vectors folded in (``merge``) or dropped: an (IA)³-free model."""
    # merged for good here (never unmerged), so vectors with zeros are fine
    fold = (lambda layer: layer.merge(reversible=False)) if merge else (lambda layer: layer.unmerge())
    return unload_layers(model, _LEDGER, ia3_layers(model), fold)


def delete_ia3(model: nn.Module, name: str) -> None:
    """Remove adapter ``name`` everywhere; layers left without vectors give their base layer back."""
    delete_named(model, _LEDGER, _KIND, name, lambda layer: not layer.ia3_l)


def save_ia3(model: nn.Module, name: str, directory: str | Path, head_patterns: Iterable[str] = (),
             task_type: Optional[str] = None) -> Path:
    """Write adapter ``name`` in peft's format (+ the head modules as peft ``modules_to_save``)."""
    ledger = require_ledger(model, _LEDGER, _KIND, name)
    config = ledger.configs[name]
    tensors: dict[str, Tensor] = {}
    fan_in_fan_out = False
    for path in ledger.paths[name]:
        layer = model.get_submodule(path)
        fan_in_fan_out |= layer.fan_in_fan_out
        tensors[f"{PEFT_PREFIX}{path}.ia3_l"] = layer.ia3_l[name]  # no adapter name
    meta = {
        "peft_type": "IA3", "task_type": task_type, "base_model_name_or_path": None, "revision": None,
        "inference_mode": True, "target_modules": config.target_modules, "exclude_modules": None,
        "feedforward_modules": config.feedforward_modules, "fan_in_fan_out": fan_in_fan_out, "init_ia3_weights": True,
    }
    return save_peft_adapter(model, directory, tensors, meta, head_patterns, "peft (IA)³")


def load_ia3(model: nn.Module, directory: str | Path, name: Optional[str] = None) -> str:
    """Add an (IA)³ saved in peft's format (by :func:`save_ia3` or peft) as ``name`` (default "default").

    The adapted layers are read from the tensor keys, which of them are feedforward from the saved
    ``feedforward_modules`` (peft's rule); the head (peft ``modules_to_save``) is copied into the model.
    Like :func:`add_ia3`, the adapter is not activated.
    """
    directory = Path(directory)
    meta = read_saved_config(directory, "adapter_config.json", "adapter_model.safetensors",
                             "peft (IA)³ (save_ia3 or peft)", ("peft_type", "target_modules", "feedforward_modules"))
    if meta.get("peft_type") != "IA3":
        raise ValueError(f"Not an (IA)³ adapter: peft_type is {meta.get('peft_type')!r}")
    if meta.get("exclude_modules"):
        raise ValueError(f"This (IA)³ uses exclude_modules={meta['exclude_modules']!r}, which course_lib does not "
                         f"implement.")
    feedforward = meta["feedforward_modules"] if isinstance(meta["feedforward_modules"], str) \
        else list(meta["feedforward_modules"] or [])
    tensors = read_tensors(directory / "adapter_model.safetensors")
    vectors, head = {}, {}
    for key, t in tensors.items():
        if (m := _PEFT_KEY.match(key)) is not None:
            vectors[m.group(1)] = t
        elif key.startswith(PEFT_PREFIX):
            head[key[len(PEFT_PREFIX):]] = t
        else:
            raise ValueError(f"Unexpected key {key!r}: peft keys start with {PEFT_PREFIX!r}")
    candidates = set(_candidates(model))
    missing = [p for p in vectors if p not in candidates]
    if missing:
        raise ValueError(f"The saved (IA)³ adapts layers this model lacks: {missing[:4]}; "
                         f"this model has {suffix_names(sorted(candidates))}")
    config = IA3Config(meta["target_modules"] if isinstance(meta["target_modules"], str)
                       else list(meta["target_modules"] or []), feedforward)
    name = name or "default"
    _inject(model, name, list(vectors), config)
    existing = dict(model.named_parameters()) | dict(model.named_buffers())
    targets = {path: model.get_submodule(path).ia3_l[name] for path in vectors} | {k: existing.get(k) for k in head}
    saved = {**vectors, **head}
    wrong = [f"{k}: saved {tuple(t.shape)}, model {None if targets[k] is None else tuple(targets[k].shape)}"
             for k, t in saved.items() if targets[k] is None or targets[k].shape != t.shape]
    if wrong:
        delete_ia3(model, name)
        raise ValueError("Saved tensors do not fit this model (a (1, in) vector scales a feedforward layer's input, "
                         "an (out, 1) vector a layer's output): " + "; ".join(wrong[:4]))
    with torch.no_grad():
        for key, t in saved.items():
            targets[key].copy_(t.to(targets[key].device, targets[key].dtype))
    return name
