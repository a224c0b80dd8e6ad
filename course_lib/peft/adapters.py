"""Bottleneck adapters (Houlsby, Pfeiffer, parallel), inserted into a model by module path.

An adapter is a tiny two-layer MLP, ``f(x) = s * up(act(down(x)))``, squeezing ``d_model`` down to a
bottleneck ``m``. Each placement is a preset equal to AdapterHub's config of the same name in eval mode, given the
same weights. With ``h`` the sublayer's output projection, ``r`` its residual input and ``LN`` the block's own
LayerNorm (BERT's post-LN block computes ``LN(h + r)`` without adapters):

* ``houlsby`` (AdapterHub ``DoubleSeqBnConfig``): two per layer, in series after the attention output projection
  and after the FFN output projection: ``LN(h + f(h) + r)``, activation swish (``silu``);
* ``pfeiffer`` (``SeqBnConfig``): one per layer, after the FFN output projection, reading the *normalised* sum
  and normalised again by the same LayerNorm: ``LN(h + f(LN(h + r)) + r)`` (``ln_before=True``), activation relu;
* ``parallel`` (``ParBnConfig``, He et al. 2022): one per layer *beside* the FFN, reading the FFN's input ``r``:
  ``LN(h + s * f(r) + r)`` with the scaling ``s = 4``, activation relu.

Options name the course's own choices: ``activation`` (e.g. relu for Houlsby, as the seed's slide writes it),
``ln_before=False`` for a Pfeiffer adapter that reads ``h`` like Houlsby's, ``scaling``, and ``init``. The default
``init="identity"`` starts ``up`` at zero, so a fresh adapter is exactly the identity; AdapterHub's default
(``"bert"``) draws ``up`` from N(0, 0.02) too, and its parallel default (``"mam"``) is kaiming-uniform ``down``,
zero ``up``. In training, AdapterHub applies the block's dropout to ``h`` before the adapter reads it; here the
adapter runs inside the output projection, so the dropout falls on ``h + f(.)`` (the eval outputs are equal).
A *stack* of series adapters feeds each adapter's output to the next (AdapterHub's ``Stack`` differs in where it
applies the LayerNorm).

The model's code is never edited: the target ``nn.Linear`` is replaced by an
:class:`AdapterSite` that keeps the original as ``base`` (so, while adapters are
present, ``...mlp.fc2.weight`` is named ``...mlp.fc2.base.weight``). Several named
adapters can live in one model; a newly added adapter is *inactive* until
:func:`set_active_adapters` (or :func:`mark_adapter_trainable`) switches it on.

An :class:`AdapterSite` also has a slot for mixers of its adapters (``fusions``: modules called
as ``mixer(h, deltas, query)`` with an ``adapter_names`` list); :mod:`course_lib.peft.fusion` fills it
and keeps its own bookkeeping. While a mixer is active, every site ignores its adapter stack:
sites holding that mixer mix its adapters, other sites run ``base`` only.
:func:`set_active_adapters` switches any fusion off.
"""

from __future__ import annotations

import json
import math
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

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "swish": nn.SiLU}
INITS = ("identity", "bert", "mam")
INIT_STD = 0.02  # std of the initial weights drawn from a normal ("identity": down only; "bert": down and up)

# placement -> the AdapterHub preset's choices (options left as None in AdapterConfig take these)
PRESETS: dict[str, dict] = {
    "houlsby": {"activation": "silu", "ln_before": False, "scaling": 1.0},
    "pfeiffer": {"activation": "relu", "ln_before": True, "scaling": 1.0},
    "parallel": {"activation": "relu", "ln_before": False, "scaling": 4.0},
}

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
    ffn_input: str      # the module whose input is the FFN sublayer's input (in a post-LN block: its residual r)
    ffn_norm: Optional[str]  # the LayerNorm after the FFN's residual addition (None: a pre-LN block has none)
    layer_class: str = ""    # when set, the layer module's class name must be this


# Add a family here to support a new architecture (the first family that matches a model wins).
ARCHITECTURES: dict[str, ArchitectureSites] = {
    "course_gpt": ArchitectureSites(r"(?:^|\.)layers\.\d+$", "attn.o_proj", "mlp.fc2", "mlp", None, "GPTBlock"),
    "course": ArchitectureSites(r"(?:^|\.)layers\.\d+$", "attn.o_proj", "mlp.fc2", "mlp", "mlp_norm"),
    "bert": ArchitectureSites(r"(?:^|\.)encoder\.layer\.\d+$", "attention.output.dense", "output.dense",
                              "intermediate", "output.LayerNorm"),
}


def adapter_param_count(d_model: int, bottleneck: int) -> int:
    """Parameters of one adapter: down (d*m + m) plus up (m*d + d)."""
    return 2 * d_model * bottleneck + d_model + bottleneck


class BottleneckAdapter(nn.Module):
    """f(x) = scaling * up(act(down(x))), a bottleneck MLP; with ``init="identity"`` a fresh one adds exactly zero."""

    def __init__(self, d_model: int, bottleneck: int, activation: str = "relu", scaling: float = 1.0,
                 init: str = "identity") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if bottleneck < 1 or d_model < 1:
            raise ValueError(f"d_model and bottleneck must be >= 1, got d_model={d_model}, bottleneck={bottleneck}")
        self.down = nn.Linear(d_model, bottleneck)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(bottleneck, d_model)
        self.scaling = float(scaling)
        if init == "mam":  # AdapterHub's parallel default (He et al. 2022's code)
            nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        else:
            nn.init.normal_(self.down.weight, mean=0.0, std=INIT_STD)
        if init == "bert":  # AdapterHub's default for series adapters: a fresh adapter is not the identity
            nn.init.normal_(self.up.weight, mean=0.0, std=INIT_STD)
        else:
            nn.init.zeros_(self.up.weight)  # up = 0, so f(x) = 0: a fresh adapter changes nothing
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.bias)

    def delta(self, x: Tensor) -> Tensor:
        """The adapter's contribution s * up(act(down(x))), without any residual."""
        return self.scaling * self.up(self.act(self.down(x)))

    def forward(self, h: Tensor) -> Tensor:
        """Series use on its own: h + f(h)."""
        return h + self.delta(h)

    def extra_repr(self) -> str:
        return f"scaling={self.scaling:g}" if self.scaling != 1.0 else ""


@dataclass
class AdapterConfig:
    """Where adapters go and how big they are (reduction_factor OR bottleneck); None options take the preset's."""

    placement: str = "pfeiffer"
    reduction_factor: Optional[int] = 16
    bottleneck: Optional[int] = None
    activation: Optional[str] = None    # preset: silu (swish) for houlsby, relu for pfeiffer and parallel
    ln_before: Optional[bool] = None    # read LN(h + r) instead of h (AdapterHub's original_ln_before): pfeiffer
    scaling: Optional[float] = None     # s in s * up(act(down(x))): 4.0 for parallel, else 1.0
    init: str = "identity"              # "identity" (up = 0), "bert" or "mam" (AdapterHub's initialisations)

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {sorted(PLACEMENTS)}, got {self.placement!r}")
        for key, value in PRESETS[self.placement].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if not isinstance(self.ln_before, bool):
            raise ValueError(f"ln_before must be True, False or None (the preset's), got {self.ln_before!r}")
        if self.ln_before and self.placement != "pfeiffer":
            raise ValueError(f"ln_before=True reads LN(h + r) after the FFN, where only the 'pfeiffer' placement "
                             f"puts its adapter; got placement={self.placement!r}.")
        if isinstance(self.scaling, bool) or not isinstance(self.scaling, (int, float)) \
                or not math.isfinite(self.scaling) or self.scaling <= 0:
            raise ValueError(f"scaling must be a finite number > 0, got {self.scaling!r}")
        self.scaling = float(self.scaling)
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
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
        self.ln_before: dict[str, bool] = {}  # adapter name -> reads LN(h + r) instead of h
        self.active: list[str] = []       # applied in this order (stacking)
        self._input_hook = None           # handle of the hook that catches the FFN input r
        self._ffn_input: Optional[Tensor] = None
        self.__dict__["_norm"] = None     # the block's own LayerNorm (not registered: the model owns it)
        self.fusions = nn.ModuleDict()  # mixer name -> module with .adapter_names (course_lib.peft.fusion)
        self.active_fusion: Optional[str] = None  # set: the stack is set aside (base only if not here)

    @property
    def d_model(self) -> int:
        """Width of the hidden states this site produces."""
        return self.base.out_features

    def use_norm(self, norm: nn.Module) -> None:
        """The block's LayerNorm that ``ln_before`` adapters read through (kept by reference, not registered)."""
        self.__dict__["_norm"] = norm

    def watch_input(self, module: nn.Module) -> None:
        """Stash ``module``'s input (the residual r) on every call that needs it; idempotent."""
        if self._input_hook is None:
            self._input_hook = module.register_forward_pre_hook(self._stash_input, with_kwargs=True)

    def unwatch_input(self) -> None:
        """Remove the input hook installed by :meth:`watch_input`."""
        if self._input_hook is not None:
            self._input_hook.remove()
            self._input_hook, self._ffn_input = None, None

    def needs_input(self, name: str) -> bool:
        """Whether adapter ``name`` reads the FFN input r (parallel, or series through LN(h + r))."""
        return self.modes[name] == "parallel" or self.ln_before.get(name, False)

    def _in_use(self) -> list[str]:
        """The adapters the next forward pass runs: the active fusion's, else the active stack."""
        if self.active_fusion is not None:
            mixer = self.fusions[self.active_fusion] if self.active_fusion in self.fusions else None
            return list(mixer.adapter_names) if mixer is not None else []
        return self.active

    def _stash_input(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if any(self.needs_input(n) for n in self._in_use()):
            self._ffn_input = args[0] if args else next(iter(kwargs.values()))

    def forward(self, x: Tensor) -> Tensor:
        """base(x), then each active adapter adds its f(.) (series: of h or LN(h + r); parallel: of r)."""
        out = self.base(x)
        ffn_input, self._ffn_input = self._ffn_input, None  # use once, never keep the tensor alive
        if self.active_fusion is not None:
            if self.active_fusion not in self.fusions:
                return out  # a fusion elsewhere is active: the adapter stack is set aside
            mixer = self.fusions[self.active_fusion]
            names = mixer.adapter_names
            deltas = [self._delta(name, out, ffn_input) for name in names]
            query = self._normed(out, ffn_input, names[-1]) if self.ln_before.get(names[-1], False) else out
            return mixer(out, torch.stack(deltas, dim=-2), query)
        for name in self.active:
            out = out + self._delta(name, out, ffn_input)
        return out

    def _normed(self, out: Tensor, ffn_input: Optional[Tensor], name: str) -> Tensor:
        """LN(h + r) with the block's own LayerNorm."""
        if ffn_input is None or self._norm is None:
            raise RuntimeError(f"Adapter {name!r} reads LN(h + r) but got no FFN input: was the FFN bypassed?")
        return self._norm(out + ffn_input)

    def _delta(self, name: str, out: Tensor, ffn_input: Optional[Tensor]) -> Tensor:
        """Adapter ``name``'s contribution: f(h) or f(LN(h + r)) in series, f(r) in parallel."""
        adapter = self.adapters[name]
        if self.modes[name] == "series":
            return adapter.delta(self._normed(out, ffn_input, name) if self.ln_before.get(name, False) else out)
        if ffn_input is None:
            raise RuntimeError(f"Parallel adapter {name!r} got no FFN input: was the FFN module bypassed?")
        return adapter.delta(ffn_input)

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
                  and (not sites.layer_class or type(modules[n]).__name__ == sites.layer_class)
                  and all(f"{n}.{p}" in modules for p in (sites.attn_output, sites.ffn_output, sites.ffn_input,
                                                          sites.ffn_norm) if p is not None)]
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
    if config.ln_before and sites.ffn_norm is None:
        raise ValueError(f"ln_before=True reads LN(h + r) through the LayerNorm after the FFN's residual addition; "
                         f"a {family!r} block is pre-LN and has none. Use AdapterConfig(placement="
                         f"{config.placement!r}, ln_before=False): the adapter then reads h, like Houlsby's.")
    paths = []
    for layer in layers:
        for role, mode in PLACEMENTS[config.placement]:
            path = f"{layer}.{getattr(sites, role)}"
            site = _site(model, path)
            weight = site.base.weight
            adapter = BottleneckAdapter(site.d_model, m, config.activation, config.scaling, config.init)
            site.adapters[name] = adapter.to(device=weight.device, dtype=weight.dtype).train(site.training)
            site.modes[name] = mode
            site.ln_before[name] = config.ln_before
            if config.ln_before:
                site.use_norm(model.get_submodule(f"{layer}.{sites.ffn_norm}"))
            if site.needs_input(name):
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
        site.ln_before.pop(name, None)
        site.active = [n for n in site.active if n != name]
        if not any(site.needs_input(n) for n in site.modes):
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
