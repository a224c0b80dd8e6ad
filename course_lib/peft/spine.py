"""The shared machinery of every PEFT method (the course's ``tuners_utils``): write it once, use it everywhere.

A method file (``lora.py``, ``adapters.py``, ...) keeps only its math and its layer class; the lifecycle
around it is the same for all of them and lives here:

* **where**: :func:`find_targets` matches module paths by exact name, path suffix or regex (the error lists
  what could be targeted); :func:`set_submodule` swaps a module in by path (the model's code is never edited);
* **which**: a :class:`Ledger` stored on the model remembers each named adapter's config and paths, which
  ones are active, and gives one clear error for an unknown or duplicate name;
* **trainable**: :func:`mark_trainable` freezes everything, then unfreezes exactly the method's tensors
  plus the task head;
* **head**: :func:`head_tensors` / :func:`save_head` store the task head next to a saved adapter
  (``head_model.safetensors``; :func:`~course_lib.checkpoints.load_head_if_saved` reads it back).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, TypeVar

import torch
from torch import Tensor, nn

from .freezing import DEFAULT_HEAD_PATTERNS, freeze_all, unfreeze, unfreeze_where

PEFT_PREFIX = "base_model.model."  # peft's key prefix: PeftModel.base_model (the tuner).model
HEAD_FILE = "head_model.safetensors"  # optional: the task head saved next to an adapter
_NUMBERED = re.compile(r"(?:^|\.)\d+\.")
_CLASSIFIER_SUFFIXES = ("ForSequenceClassification", "ForTokenClassification", "ForMultipleChoice")
T = TypeVar("T")


def set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    """Put ``module`` at dotted ``path`` inside ``model`` (replacing what is there)."""
    parent, _, child = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def suffix_names(paths: Iterable[str]) -> list[str]:
    """Short names to target by: the last part inside numbered layers, else the full path (a head)."""
    out: list[str] = []
    for p in paths:
        short = p.rsplit(".", 1)[-1] if _NUMBERED.search(p) else p
        if short not in out:
            out.append(short)
    return out


def _matches(path: str, target: str) -> bool:
    return path == target or path.endswith("." + target)


def match_targets(candidates: list[str], target_modules: str | Iterable[str], what: str) -> dict[str, list[str]]:
    """Target -> matched candidate paths, like peft: a str is a regex (fullmatch), a list holds names/suffixes.

    Every target must match at least one candidate; the error lists the candidates by suffix. ``what``
    names the kind of layer in messages (e.g. "nn.Linear/Linear4bit/Conv1D").
    """
    hint = f"Layers that can be targeted ({what}, by suffix): {suffix_names(candidates)}"
    if isinstance(target_modules, str):
        paths = [p for p in candidates if re.fullmatch(target_modules, p)]
        if not paths:
            raise ValueError(f"target_modules regex {target_modules!r} matched no module path. {hint}")
        return {target_modules: paths}
    targets = list(target_modules)
    if not targets:
        raise ValueError(f"Give at least one target module. {hint}")
    chosen = {t: [p for p in candidates if _matches(p, t)] for t in targets}
    for t, paths in chosen.items():
        if not paths:
            raise ValueError(f"Target {t!r} matched no {what} module. {hint}")
    return chosen


def find_targets(candidates: list[str], target_modules: str | Iterable[str], what: str) -> list[str]:
    """The candidate paths matched by any target (in model order); see :func:`match_targets`."""
    matched = {p for paths in match_targets(candidates, target_modules, what).values() for p in paths}
    return [p for p in candidates if p in matched]


def check_adapter_name(name: Any, kind: str) -> str:
    """A valid adapter name: a non-empty str without '.' that is not an nn.Module attribute (it keys a ModuleDict)."""
    if not isinstance(name, str) or not name or "." in name:
        raise ValueError(f"{kind} names must be non-empty strings without '.', got {name!r}")
    if hasattr(nn.ModuleDict(), name):
        raise ValueError(f"{kind} name {name!r} is taken by an nn.Module attribute (e.g. .half(), .train()); "
                         f"pick another name, such as {name + '_adapter'!r}.")
    return name


def as_name_list(names: str | Iterable[str] | None) -> list[str]:
    """None -> [], "a" -> ["a"], an iterable -> a list."""
    return [] if names is None else [names] if isinstance(names, str) else list(names)


@dataclass
class Ledger:
    """One method's named adapters on one model: config and module paths per name, and the active ones."""

    kind: str  # how messages name one entry: "LoRA adapter", "adapter", "fusion"
    configs: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, list[str]] = field(default_factory=dict)
    active: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # method-wide facts (e.g. the model family and width)

    def names(self) -> list[str]:
        """Names in the order they were added."""
        return list(self.configs)

    def require(self, name: str) -> "Ledger":
        """Self if ``name`` exists, else a KeyError listing the names there are."""
        if name not in self.configs:
            raise KeyError(f"No {self.kind} named {name!r}; this model has: {self.names()}")
        return self

    def require_new(self, name: str) -> None:
        """A ValueError if ``name`` is taken (or not a valid name)."""
        check_adapter_name(name, self.kind)
        if name in self.configs:
            raise ValueError(f"A {self.kind} named {name!r} already exists ({self.kind}s: {self.names()}); "
                             f"delete it first or pick another name.")

    def add(self, name: str, config: Any, paths: list[str]) -> None:
        """Record a new entry (inactive)."""
        self.configs[name], self.paths[name] = config, list(paths)

    def remove(self, name: str) -> list[str]:
        """Forget ``name``; return its paths."""
        self.require(name)
        del self.configs[name]
        self.active = [n for n in self.active if n != name]
        return self.paths.pop(name)

    def check_known(self, names: list[str]) -> list[str]:
        """``names`` if each exists once, else a clear error."""
        for n in names:
            self.require(n)
        if len(set(names)) != len(names):
            raise ValueError(f"Each {self.kind} can be active once, got {names}")
        return names


def get_ledger(model: nn.Module, attr: str, kind: str, create: bool = False) -> Optional[Ledger]:
    """The ledger stored on ``model`` as ``attr`` (a new empty one stored there when ``create``)."""
    ledger = getattr(model, attr, None)
    if ledger is None and create:
        ledger = Ledger(kind)
        setattr(model, attr, ledger)
    return ledger


def ledger_names(model: nn.Module, attr: str) -> list[str]:
    """Names in the model's ledger ``attr``, in the order they were added ([] without a ledger)."""
    ledger = getattr(model, attr, None)
    return ledger.names() if ledger else []


def ledger_active(model: nn.Module, attr: str) -> list[str]:
    """The active names in the model's ledger ``attr`` ([] without a ledger)."""
    ledger = getattr(model, attr, None)
    return list(ledger.active) if ledger else []


def activate_layers(model: nn.Module, attr: str, kind: str, layers: Iterable[Any],
                    names: str | Iterable[str] | None) -> list[str]:
    """Check ``names`` against the ledger, call ``set_active(names)`` on every layer, record them; return them."""
    names = as_name_list(names)
    ledger = getattr(model, attr, None)
    (ledger or Ledger(kind)).check_known(names)
    for layer in layers:
        layer.set_active(names)
    if ledger is not None:
        ledger.active = names
    return names


def delete_named(model: nn.Module, attr: str, kind: str, name: str, is_empty: Callable[[nn.Module], bool]) -> None:
    """Remove adapter ``name`` from every layer holding it; a layer left ``is_empty`` gives its base layer back."""
    for path in require_ledger(model, attr, kind, name).remove(name):
        layer = model.get_submodule(path)
        layer.delete_adapter(name)
        if is_empty(layer):
            layer.unmerge()
            set_submodule(model, path, layer.base_layer)
    drop_ledger_if_empty(model, attr)


def unload_layers(model: nn.Module, attr: str, layers: dict[str, nn.Module],
                  fold: Callable[[nn.Module], Any]) -> nn.Module:
    """Call ``fold(layer)`` (merge, or unmerge to drop) on every layer, put its base layer back, drop the ledger."""
    for path, layer in layers.items():
        fold(layer)
        set_submodule(model, path, layer.base_layer)
    if getattr(model, attr, None) is not None:
        delattr(model, attr)
    return model


def require_ledger(model: nn.Module, attr: str, kind: str, name: str) -> Ledger:
    """The model's ledger if it holds ``name``, else a KeyError listing the names there are."""
    return (get_ledger(model, attr, kind) or Ledger(kind)).require(name)


def drop_ledger_if_empty(model: nn.Module, attr: str) -> None:
    """Remove the ledger from the model once its last entry is gone."""
    ledger = getattr(model, attr, None)
    if ledger is not None and not ledger.configs:
        delattr(model, attr)


def check_count(value: Any, what: str) -> None:
    """A clear error unless ``value`` is an int >= 1 (a count of virtual tokens or prefixes)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an integer >= 1 (with 0 there is nothing to train), got {value!r}")


def is_classifier(model: nn.Module) -> bool:
    """True for a sequence/token classifier (course or Hugging Face): its fresh head must be trained."""
    from ..models.encoder import EncoderForSequenceClassification

    return isinstance(model, EncoderForSequenceClassification) or type(model).__name__.endswith(_CLASSIFIER_SUFFIXES)


def unfreeze_head(model: nn.Module, head_patterns: Iterable[str]) -> list[str]:
    """Unfreeze the head: a classifier's must match every pattern; a language model may have none to unfreeze."""
    patterns = list(head_patterns)
    if not patterns:
        return []
    if is_classifier(model):
        return unfreeze(model, patterns)
    if not any(re.search(p, n) for n, _ in model.named_parameters() for p in patterns):
        return []
    return unfreeze_where(model, lambda n, _: any(re.search(p, n) for p in patterns), what=str(patterns))


def layers_of_type(model: nn.Module, cls: type[T]) -> dict[str, T]:
    """Every submodule of type ``cls``, by module path."""
    return {n: m for n, m in model.named_modules() if isinstance(m, cls)}


def mark_trainable(model: nn.Module, predicate: Callable[[str, nn.Parameter], bool], what: str,
                   head_patterns: Iterable[str] = DEFAULT_HEAD_PATTERNS) -> list[str]:
    """Freeze everything, unfreeze the parameters ``predicate`` picks (+ the head; () for none); return names."""
    freeze_all(model)
    names = unfreeze_where(model, predicate, what=what)
    head_patterns = list(head_patterns)
    if head_patterns:
        names += [n for n in unfreeze(model, head_patterns) if n not in names]
    return names


def mark_named_trainable(model: nn.Module, ledger_attr: str, kind: str, name: str,
                         owns: Callable[[str], bool], activate: Callable[[nn.Module, str], None],
                         head_patterns: Iterable[str] = DEFAULT_HEAD_PATTERNS) -> list[str]:
    """The lifecycle step every named method shares: check ``name``, train only its tensors (``owns(param name)``)
    and the head, then make it the active one. Returns the trainable names."""
    require_ledger(model, ledger_attr, kind, name)
    names = mark_trainable(model, lambda n, _: owns(n), f"{kind} {name!r}", head_patterns)
    activate(model, name)
    return names


def head_tensors(model: nn.Module, head_patterns: Iterable[str]) -> dict[str, Tensor]:
    """CPU copies of the parameters whose names match any of ``head_patterns`` (each must match something)."""
    head_patterns = list(head_patterns)
    head = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters()
            if any(re.search(pattern, n) for pattern in head_patterns)}
    if not head:
        raise ValueError(f"head_patterns {head_patterns} matched no parameter of the model.")
    return head


def save_head(model: nn.Module, directory: str | Path, head_patterns: Iterable[str]) -> Optional[Path]:
    """Write the head tensors to ``directory/head_model.safetensors`` (nothing when ``head_patterns`` is empty)."""
    from safetensors.torch import save_file

    head_patterns = list(head_patterns)
    if not head_patterns:
        return None
    path = Path(directory) / HEAD_FILE
    save_file(head_tensors(model, head_patterns), str(path))
    return path


def regularization_loss(model: nn.Module) -> Optional[Tensor]:
    """The sum of every submodule's ``regularization_loss()`` (e.g. AdapterFusion's), or None when none applies."""
    terms = [term for module in model.modules() if hasattr(module, "regularization_loss")
             for term in [module.regularization_loss()] if term is not None]
    return torch.stack(terms).sum() if terms else None


def peft_head_modules(model: nn.Module, head_patterns: list[str]) -> list[str]:
    """The outermost modules whose parameters all match ``head_patterns`` (peft's modules_to_save)."""
    matched = {n for n, _ in model.named_parameters() if any(re.search(p, n) for p in head_patterns)}
    if not matched:
        raise ValueError(f"head_patterns {head_patterns} matched no parameter of the model.")
    chosen: list[str] = []
    for path, module in model.named_modules():
        names = {f"{path}.{n}" if path else n for n, _ in module.named_parameters()}
        if names and names <= matched and not any(path.startswith(c + ".") for c in chosen):
            chosen.append(path)
    covered = {n for n in matched if any(n.startswith(c + ".") for c in chosen)}
    if covered != matched:
        raise ValueError(f"head_patterns must select whole modules; partly selected: {sorted(matched - covered)}")
    return chosen


def save_peft_adapter(model: nn.Module, directory: str | Path, tensors: dict[str, Tensor], meta: dict,
                      head_patterns: Iterable[str], what: str) -> Path:
    """Write peft's adapter_model.safetensors + adapter_config.json atomically, the head as ``modules_to_save``.

    ``tensors`` are the method's tensors under peft's keys; the head modules' tensors are added under their own
    paths (peft's layout) and ``meta["modules_to_save"]`` names them. ``what`` names the format in messages.
    """
    from safetensors.torch import save_file

    from ..checkpoints import save_folder

    head_patterns = list(head_patterns)
    heads = peft_head_modules(model, head_patterns) if head_patterns else []
    tensors = {k: t.detach().cpu().contiguous() for k, t in tensors.items()}
    for head in heads:  # peft saves modules_to_save under the original module path
        for key, t in model.get_submodule(head).state_dict().items():
            tensors[f"{PEFT_PREFIX}{head}.{key}"] = t.detach().cpu().contiguous()
    meta = {**meta, "modules_to_save": heads or None}

    def write(folder: Path) -> None:
        save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
        (folder / "adapter_config.json").write_text(json.dumps(meta, indent=2))

    return save_folder(directory, write, "adapter_config.json",
                       lambda saved: saved.get("peft_type") == meta["peft_type"], what)
