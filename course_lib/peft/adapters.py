"""Bottleneck adapters (Houlsby, Pfeiffer, parallel), inserted into a model by module path.

An adapter is a tiny two-layer MLP with a residual connection,
``h -> h + up(act(down(h)))``, squeezing ``d_model`` down to a bottleneck ``m``.
Its ``up`` projection starts at zero, so a fresh adapter is exactly the identity
and training starts from the pretrained model's behaviour.

Where the adapters go (one transformer layer; ``FFN`` is the feed-forward sublayer):

* ``houlsby``  two per layer, in series, on the outputs of the attention output
  projection and of the FFN output projection (before dropout, residual and LayerNorm);
* ``pfeiffer`` one per layer, in series, on the FFN output projection only;
* ``parallel`` one per layer *beside* the FFN: ``FFN(x) + delta(x)`` with ``x`` the
  FFN's input (He et al. 2022; LLM-Adapters).

The model's code is never edited: the target ``nn.Linear`` is replaced by an
:class:`AdapterSite` that keeps the original as ``base`` (so, while adapters are
present, ``...mlp.fc2.weight`` is named ``...mlp.fc2.base.weight``). Several named
adapters can live in one model; a newly added adapter is *inactive* until
:func:`set_active_adapters` (or :func:`mark_adapter_trainable`) switches it on.

An :class:`AdapterSite` also has a slot for mixers of its adapters (``fusions``: modules called
as ``mixer(h, deltas)`` with an ``adapter_names`` list); :mod:`course_lib.peft.fusion` fills it
and keeps its own bookkeeping. While a mixer is active, every site ignores its adapter stack:
sites holding that mixer mix its adapters, other sites run ``base`` only.
:func:`set_active_adapters` switches any fusion off.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Optional

import torch
from torch import Tensor, nn

from ..checkpoints import copy_saved_tensors, load_head_if_saved, read_saved_config, read_tensors, save_folder
from ..models.common import config_from_dict
from .freezing import DEFAULT_HEAD_PATTERNS
from .spine import (HEAD_FILE, Ledger, as_name_list, drop_ledger_if_empty, get_ledger, layers_of_type,
                    mark_named_trainable, require_ledger, save_head, set_submodule)

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}
INIT_STD = 0.02  # std of the down projection's initial weights

# placement -> (site role, mode) pairs; the roles name fields of ArchitectureSites.
PLACEMENTS: dict[str, tuple[tuple[str, str], ...]] = {
    "houlsby": (("attn_output", "series"), ("ffn_output", "series")),
    "pfeiffer": (("ffn_output", "series"),),
    "parallel": (("ffn_output", "parallel"),),
}


@dataclass(frozen=True)
class ArchitectureSites:
    """Where adapters go in one model family: a regex for layer names, then paths inside a layer."""

    layer_pattern: str  # matched (re.search) against full module names, e.g. "encoder.layers.3"
    attn_output: str    # the attention output projection (nn.Linear)
    ffn_output: str     # the FFN output projection (nn.Linear)
    ffn_input: str      # the module whose input is the FFN sublayer's input


# Add a family here to support a new architecture.
ARCHITECTURES: dict[str, ArchitectureSites] = {
    "course": ArchitectureSites(r"(?:^|\.)layers\.\d+$", "attn.o_proj", "mlp.fc2", "mlp"),
    "bert": ArchitectureSites(r"(?:^|\.)encoder\.layer\.\d+$", "attention.output.dense", "output.dense",
                              "intermediate"),
}


def adapter_param_count(d_model: int, bottleneck: int) -> int:
    """Parameters of one adapter: down (d*m + m) plus up (m*d + d)."""
    return 2 * d_model * bottleneck + d_model + bottleneck


class BottleneckAdapter(nn.Module):
    """h + up(act(down(h))): a residual bottleneck MLP that starts as the identity."""

    def __init__(self, d_model: int, bottleneck: int, activation: str = "relu") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if bottleneck < 1 or d_model < 1:
            raise ValueError(f"d_model and bottleneck must be >= 1, got d_model={d_model}, bottleneck={bottleneck}")
        self.down = nn.Linear(d_model, bottleneck)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(bottleneck, d_model)
        nn.init.normal_(self.down.weight, mean=0.0, std=INIT_STD)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)  # up = 0, so delta(h) = 0: a fresh adapter changes nothing
        nn.init.zeros_(self.up.bias)

    def delta(self, h: Tensor) -> Tensor:
        """The adapter's contribution up(act(down(h))), without the residual."""
        return self.up(self.act(self.down(h)))

    def forward(self, h: Tensor) -> Tensor:
        """Series use: h + delta(h)."""
        return h + self.delta(h)


@dataclass
class AdapterConfig:
    """Where adapters go and how big they are: set reduction_factor OR bottleneck, not both."""

    placement: str = "pfeiffer"
    reduction_factor: Optional[int] = 16
    bottleneck: Optional[int] = None
    activation: str = "relu"

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {sorted(PLACEMENTS)}, got {self.placement!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if (self.reduction_factor is None) == (self.bottleneck is None):
            raise ValueError(
                f"Set exactly one of reduction_factor and bottleneck, got reduction_factor={self.reduction_factor!r}, "
                f"bottleneck={self.bottleneck!r}; e.g. AdapterConfig(reduction_factor=None, bottleneck=64)."
            )
        for key in ("reduction_factor", "bottleneck"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"AdapterConfig.{key} must be a positive integer (>= 1), got {value!r}")

    def bottleneck_size(self, d_model: int) -> int:
        """The bottleneck m for a model of width d_model (bottleneck, or d_model // reduction_factor)."""
        m = self.bottleneck if self.bottleneck is not None else d_model // self.reduction_factor
        if m < 1:
            raise ValueError(f"Bottleneck size would be {m}: reduction_factor ({self.reduction_factor}) must be "
                             f"<= d_model ({d_model}).")
        return m

    def to_dict(self) -> dict:
        """Plain dict of the fields (JSON friendly)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AdapterConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error that lists the allowed ones."""
        return config_from_dict(cls, d)


class AdapterSite(nn.Module):
    """Stands in for one nn.Linear: runs ``base`` then the active adapters, in order (or the active fusion)."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base
        self.adapters = nn.ModuleDict()
        self.modes: dict[str, str] = {}   # adapter name -> "series" or "parallel"
        self.active: list[str] = []       # applied in this order (stacking)
        self._input_hook = None           # handle of the hook that catches the FFN input
        self._ffn_input: Optional[Tensor] = None
        self.fusions = nn.ModuleDict()  # mixer name -> module with .adapter_names (course_lib.peft.fusion)
        self.active_fusion: Optional[str] = None  # set: the stack is set aside (base only if not here)

    @property
    def d_model(self) -> int:
        """Width of the hidden states this site produces."""
        return self.base.out_features

    def watch_input(self, module: nn.Module) -> None:
        """Stash ``module``'s input on every call (for parallel adapters); idempotent."""
        if self._input_hook is None:
            self._input_hook = module.register_forward_pre_hook(self._stash_input, with_kwargs=True)

    def unwatch_input(self) -> None:
        """Remove the input hook installed by :meth:`watch_input`."""
        if self._input_hook is not None:
            self._input_hook.remove()
            self._input_hook, self._ffn_input = None, None

    def _in_use(self) -> list[str]:
        """The adapters the next forward pass runs: the active fusion's, else the active stack."""
        if self.active_fusion is not None:
            mixer = self.fusions[self.active_fusion] if self.active_fusion in self.fusions else None
            return list(mixer.adapter_names) if mixer is not None else []
        return self.active

    def _stash_input(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if any(self.modes[n] == "parallel" for n in self._in_use()):
            self._ffn_input = args[0] if args else next(iter(kwargs.values()))

    def forward(self, x: Tensor) -> Tensor:
        """base(x), then each active adapter: series h + delta(h), parallel h + delta(ffn_input)."""
        out = self.base(x)
        ffn_input, self._ffn_input = self._ffn_input, None  # use once, never keep the tensor alive
        if self.active_fusion is not None:
            if self.active_fusion not in self.fusions:
                return out  # a fusion elsewhere is active: the adapter stack is set aside
            mixer = self.fusions[self.active_fusion]
            deltas = [self._delta(name, out, ffn_input) for name in mixer.adapter_names]
            return mixer(out, torch.stack(deltas, dim=-2))
        for name in self.active:
            if self.modes[name] == "series":
                out = self.adapters[name](out)
            else:
                out = out + self._delta(name, out, ffn_input)
        return out

    def _delta(self, name: str, out: Tensor, ffn_input: Optional[Tensor]) -> Tensor:
        """Adapter ``name``'s contribution: delta(out) in series, delta(ffn_input) in parallel."""
        if self.modes[name] == "series":
            return self.adapters[name].delta(out)
        if ffn_input is None:
            raise RuntimeError(f"Parallel adapter {name!r} got no FFN input: was the FFN module bypassed?")
        return self.adapters[name].delta(ffn_input)

    def extra_repr(self) -> str:
        return f"active={self.active}" + (f", active_fusion={self.active_fusion!r}" if self.active_fusion else "")


_LEDGER, _KIND = "_course_adapters", "adapter"


def _ledger(model: nn.Module, create: bool = False) -> Optional[Ledger]:
    return get_ledger(model, _LEDGER, _KIND, create)


def adapter_ledger(model: nn.Module) -> Ledger:
    """The model's adapter ledger (configs, paths, active stack); empty when it has no adapters."""
    return _ledger(model) or Ledger(_KIND)


def adapter_sites(model: nn.Module) -> dict[str, AdapterSite]:
    """Every AdapterSite of the model, by module path."""
    return layers_of_type(model, AdapterSite)


def detect_architecture(model: nn.Module) -> tuple[str, list[str]]:
    """The family name (a key of ARCHITECTURES) and the names of the model's transformer layers."""
    modules = dict(model.named_modules())
    for family, sites in ARCHITECTURES.items():
        layers = [n for n in modules if re.search(sites.layer_pattern, n)
                  and all(f"{n}.{p}" in modules for p in (sites.attn_output, sites.ffn_output, sites.ffn_input))]
        if layers:
            return family, layers
    preview = ", ".join(list(modules)[1:13])
    raise ValueError(f"Unsupported architecture: supported families are {sorted(ARCHITECTURES)} "
                     f"(see ARCHITECTURES). This model's module names look like: {preview}, ...")


def _site(model: nn.Module, path: str) -> AdapterSite:
    """The AdapterSite at ``path``, wrapping the Linear found there on first use."""
    module = model.get_submodule(path)
    if isinstance(module, AdapterSite):
        return module
    if not isinstance(module, nn.Linear):
        raise TypeError(f"Expected an nn.Linear at {path!r}, found {type(module).__name__}")
    site = AdapterSite(module)
    site.train(module.training)
    set_submodule(model, path, site)
    return site


def model_width(model: nn.Module) -> tuple[str, int]:
    """The model's family (a key of ARCHITECTURES) and hidden size (the FFN output width)."""
    family, layers = detect_architecture(model)
    module = model.get_submodule(f"{layers[0]}.{ARCHITECTURES[family].ffn_output}")
    return family, (module.base if isinstance(module, AdapterSite) else module).out_features


def check_saved_for(model: nn.Module, meta: dict, what: str) -> None:
    """A clear error unless saved ``meta`` (its "family" and "d_model") fits this model."""
    family, d_model = model_width(model)
    if meta["family"] != family:
        raise ValueError(f"{what} was saved for a {meta['family']!r} model, this model is {family!r}.")
    if meta["d_model"] != d_model:
        raise ValueError(f"{what} was saved for hidden size {meta['d_model']}, this model has {d_model}.")


def add_adapter(model: nn.Module, name: str, config: AdapterConfig) -> list[str]:
    """Insert adapter ``name`` (inactive) at every layer; return the module paths that got one."""
    if not isinstance(config, AdapterConfig):
        raise TypeError(f"config must be an AdapterConfig, got {type(config).__name__}")
    (_ledger(model) or Ledger(_KIND)).require_new(name)
    family, layers = detect_architecture(model)
    sites = ARCHITECTURES[family]
    d_model = model_width(model)[1]
    m = config.bottleneck_size(d_model)  # validate before touching the model
    paths = []
    for layer in layers:
        for role, mode in PLACEMENTS[config.placement]:
            path = f"{layer}.{getattr(sites, role)}"
            site = _site(model, path)
            weight = site.base.weight
            adapter = BottleneckAdapter(site.d_model, m, config.activation).to(device=weight.device,
                                                                               dtype=weight.dtype)
            site.adapters[name] = adapter.train(site.training)
            site.modes[name] = mode
            if mode == "parallel":
                site.watch_input(model.get_submodule(f"{layer}.{sites.ffn_input}"))
            paths.append(path)
    ledger = _ledger(model, create=True)
    ledger.extra.update(family=family, d_model=d_model)
    ledger.add(name, config, paths)
    return paths


def list_adapters(model: nn.Module) -> list[str]:
    """Names of the adapters in use, in the order they were added."""
    ledger = _ledger(model)
    return ledger.names() if ledger else []


def active_adapters(model: nn.Module) -> list[str]:
    """Names of the adapters in use, in the order they are applied (while a fusion is active: the fused ones)."""
    for site in adapter_sites(model).values():
        if site.active_fusion is not None and site.active_fusion in site.fusions:
            return list(site.fusions[site.active_fusion].adapter_names)
    ledger = _ledger(model)
    return list(ledger.active) if ledger else []


def set_active_adapters(model: nn.Module, names: str | list[str] | None) -> None:
    """Use one adapter, a stack (a list, applied in order), or none (None: the base model); ends any fusion."""
    names = (_ledger(model) or Ledger(_KIND)).check_known(as_name_list(names))
    for site in adapter_sites(model).values():
        site.active = [n for n in names if n in site.adapters]
        site.active_fusion = None
    if _ledger(model) is not None:
        _ledger(model).active = names


def deactivate_adapters(model: nn.Module) -> None:
    """Switch every adapter off: the model behaves like the base model again."""
    set_active_adapters(model, None)


def delete_adapter(model: nn.Module, name: str) -> None:
    """Remove adapter ``name`` everywhere; empty sites give their original module back."""
    ledger = require_ledger(model, _LEDGER, _KIND, name)
    users = sorted({f for site in adapter_sites(model).values() for f, mixer in site.fusions.items()
                    if name in mixer.adapter_names})
    if users:
        raise ValueError(f"Adapter {name!r} is used by fusion(s) {users}; delete_fusion them first.")
    for path in ledger.remove(name):
        site = model.get_submodule(path)
        del site.adapters[name]
        site.modes.pop(name)
        site.active = [n for n in site.active if n != name]
        if "parallel" not in site.modes.values():
            site.unwatch_input()
        if not site.modes:
            set_submodule(model, path, site.base)
    drop_ledger_if_empty(model, _LEDGER)


def mark_adapter_trainable(model: nn.Module, name: str,
                           head_patterns: Iterable[str] = DEFAULT_HEAD_PATTERNS) -> list[str]:
    """Make adapter ``name`` (+ the head; () for none) the only trainable tensors and activate it; return names."""
    return mark_named_trainable(model, _LEDGER, _KIND, name, lambda n: f".adapters.{name}." in n,
                                set_active_adapters, head_patterns)


def _adapter_parameters(model: nn.Module, name: str) -> dict[str, nn.Parameter]:
    """Adapter ``name``'s parameters keyed by ``<site path>.<down|up>.<weight|bias>``."""
    ledger = require_ledger(model, _LEDGER, _KIND, name)
    return {f"{path}.{key}": p for path in ledger.paths[name]
            for key, p in model.get_submodule(path).adapters[name].named_parameters()}


def adapter_state_dict(model: nn.Module, name: str) -> dict[str, Tensor]:
    """Adapter ``name``'s tensors (CPU copies) keyed by module path, e.g. ``encoder.layers.0.mlp.fc2.up.weight``."""
    return {k: p.detach().cpu().contiguous() for k, p in _adapter_parameters(model, name).items()}


def save_adapter(model: nn.Module, name: str, directory: str | Path, head_patterns: Iterable[str] = ()) -> Path:
    """Write adapter_config.json and adapter_model.safetensors (+ head_model.safetensors if head_patterns)."""
    from safetensors.torch import save_file

    ledger = require_ledger(model, _LEDGER, _KIND, name)
    meta = {"name": name, **ledger.extra, **ledger.configs[name].to_dict()}

    def write(folder: Path) -> None:
        save_file(adapter_state_dict(model, name), str(folder / "adapter_model.safetensors"))
        save_head(model, folder, head_patterns)
        (folder / "adapter_config.json").write_text(json.dumps(meta, indent=2))

    return save_folder(directory, write, "adapter_config.json",
                       lambda saved: "placement" in saved and "peft_type" not in saved, "bottleneck adapter")


def load_adapter(model: nn.Module, directory: str | Path, name: Optional[str] = None) -> str:
    """Add a saved adapter (under its saved name, or ``name``) with its weights (and head, if saved); not activated."""
    directory = Path(directory)
    meta = read_saved_config(directory, "adapter_config.json", "adapter_model.safetensors",
                             "bottleneck adapter (save_adapter; a peft LoRA loads with load_lora)",
                             ("name", "family", "d_model", "placement"))
    check_saved_for(model, meta, "Adapter")
    saved_name = meta.pop("name")
    meta.pop("family"), meta.pop("d_model")
    name = name or saved_name
    add_adapter(model, name, AdapterConfig.from_dict(meta))
    tensors, params = read_tensors(directory / "adapter_model.safetensors"), _adapter_parameters(model, name)
    try:
        copy_saved_tensors(params, tensors)
    except ValueError:
        delete_adapter(model, name)  # leave the model as it was
        raise
    load_head_if_saved(model, directory / HEAD_FILE)
    return name
