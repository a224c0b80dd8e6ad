"""Merging LoRA adapters: one new adapter built from several trained ones (peft's ``add_weighted_adapter``).

Each trained adapter ``i`` is a *task vector*: the update ``ΔW_i = s_i B_i A_i`` it adds to a frozen weight
(``s_i`` its scaling). Merging combines task vectors ``τ_1..τ_n`` with weights ``w_1..w_n`` (a negative
weight subtracts a task). The tensor merges, each a plain function of tensors::

    task arithmetic    τ = Σ_i w_i τ_i
    magnitude prune    τ = Σ_i w_i trim(τ_i)         trim keeps the ⌊density·numel⌋ largest |entries|, zeros the rest
    TIES           (1) trim:          t_i = trim(τ_i)
                   (2) elect sign:    γ = sign(Σ_i t_i) ("total") or sign(Σ_i sign(t_i)) ("frequency"); 0 counts as +
                   (3) disjoint mean: τ = Σ_i [sign(t_i) = γ] w_i t_i / max(1, #{i : sign(t_i) = γ})
    DARE           drop with prob p and rescale: t_i = m_i ⊙ τ_i / (1 - p),  m_i ~ Bernoulli(1 - p) per entry,
                   then τ = Σ_i w_i t_i ("dare_linear") or TIES steps (2)-(3) ("dare_ties")

``density`` is the fraction kept: TIES keeps the top ``density`` by magnitude, DARE drops with ``p = 1 - density``
(so a kept entry is multiplied by exactly ``1 / density``). ``density = 1`` prunes nothing.

:func:`add_weighted_lora` turns the merge into a new LoRA adapter (A, B) in one of three ways:

* ``"cat"``: stack the factors, ``A = [w_1 s_1 A_1; ...; w_n s_n A_n]`` (rows) and ``B = [B_1 ... B_n]``
  (columns), so ``B A = Σ_i w_i s_i B_i A_i`` *exactly*; the rank is ``Σ_i r_i``.
* ``"svd"`` and ``"<merge>_svd"``: merge the full updates, ``ΔW = merge(ΔW_i, w_i)``, then keep the top
  ``svd_rank`` singular directions, ``ΔW ≈ U_r S_r V_r^T``: ``B = U_r S_r``, ``A = V_r^T`` (the best rank-r
  approximation; rank ``svd_rank``, default the largest ``r_i``).
* ``"linear"``, ``"ties"``, ``"dare_linear"``, ``"dare_ties"``, ``"magnitude_prune"``: merge the A's and the B's
  *separately* (cheap, but only an approximation: ``B A`` picks up cross terms ``B_j A_i``), with
  ``c_i = w_i s_i``::

      A = merge(A_i, sign(c_i) sqrt|c_i|),     B = merge(B_i, sqrt|c_i|)           (all ranks must be equal)

  With one adapter ``B A = c_1 B_1 A_1`` exactly (peft then always uses ``"linear"``, and so does this file).

The new adapter has ``alpha = r`` (scaling 1): its A and B already carry every scale. It is registered like one
made by :func:`~course_lib.peft.lora.add_lora` (inactive; ``set_active_lora`` / ``save_lora`` work on it) on
every layer where any of the merged adapters lives. The results equal peft's ``add_weighted_adapter`` with the
same inputs, and for DARE with the same ``torch`` seed (masks are drawn layer by layer in model order, A's then
B's, as peft draws them).
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

import torch
from torch import Tensor

from .lora import LoRAConfig, LoRALinear, _inject, _ledger, lora_layers
from .spine import Ledger

COMBINATION_TYPES = ("linear", "cat", "svd", "ties", "ties_svd", "dare_linear", "dare_linear_svd", "dare_ties",
                     "dare_ties_svd", "magnitude_prune", "magnitude_prune_svd")
FACTOR_TYPES = ("linear", "ties", "dare_linear", "dare_ties", "magnitude_prune")  # merge A's and B's separately
SIGN_METHODS = ("total", "frequency")


# ---------------------------------------------------------------------------------------------------------------
# Tensor merges: task vectors in, one task vector out
# ---------------------------------------------------------------------------------------------------------------

def _check_density(density: object) -> float:
    if isinstance(density, bool) or not isinstance(density, (int, float)) or not 0 < density <= 1:
        raise ValueError(f"density is the fraction of entries to keep and must be in (0, 1], got {density!r}")
    return float(density)


def _check_sign_method(method: str) -> str:
    if method not in SIGN_METHODS:
        raise ValueError(f"majority_sign_method must be one of {list(SIGN_METHODS)}, got {method!r}")
    return method


def _stack(deltas: Sequence[Tensor], weights: Sequence[float] | Tensor) -> tuple[Tensor, Tensor]:
    """The task vectors stacked on a new dim 0, and the weights shaped to broadcast over them."""
    deltas = list(deltas)
    if not deltas:
        raise ValueError("Give at least one tensor to merge")
    shapes = {tuple(t.shape) for t in deltas}
    if len(shapes) != 1:
        raise ValueError(f"All tensors to merge must have the same shape, got {sorted(shapes)}")
    weights = torch.as_tensor(weights, device=deltas[0].device)
    if not weights.is_floating_point():
        weights = weights.float()
    if weights.dim() != 1 or len(weights) != len(deltas):
        raise ValueError(f"Give one weight per tensor: {len(deltas)} tensors, weights of shape {tuple(weights.shape)}")
    stacked = torch.stack(deltas)
    return stacked, weights.reshape(-1, *[1] * (stacked.dim() - 1))


def trim(tensor: Tensor, density: float) -> Tensor:
    """Keep the ⌊density·numel⌋ entries of largest magnitude, zero the rest (TIES's trim step)."""
    density = _check_density(density)
    if density == 1:
        return tensor
    flat = tensor.reshape(-1)
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[torch.topk(flat.abs(), k=int(density * flat.numel())).indices] = True
    return tensor * keep.reshape(tensor.shape)


def drop_and_rescale(tensor: Tensor, density: float, generator: Optional[torch.Generator] = None) -> Tensor:
    """DARE: drop each entry with probability p = 1 - density, divide the survivors by (1 - p)."""
    density = _check_density(density)
    if density == 1:
        return tensor
    kept = torch.bernoulli(torch.full_like(tensor, density), generator=generator)
    return tensor * kept / density


def elect_sign(stacked: Tensor, majority_sign_method: str = "total") -> Tensor:
    """TIES's sign election over dim 0: True where an entry's sign is the majority sign (ties go to +)."""
    _check_sign_method(majority_sign_method)
    signs = stacked.sign()
    votes = stacked.sum(dim=0) if majority_sign_method == "total" else signs.sum(dim=0)
    majority = torch.where(votes >= 0, 1.0, -1.0).to(signs.dtype)
    return signs == majority


def disjoint_mean(weighted: Tensor, agree: Tensor) -> Tensor:
    """TIES's disjoint merge: the mean over dim 0 of the entries that agree with the elected sign."""
    return (weighted * agree).sum(dim=0) / agree.sum(dim=0).clamp(min=1)


def task_arithmetic(deltas: Sequence[Tensor], weights: Sequence[float] | Tensor) -> Tensor:
    """Task arithmetic: τ = Σ_i w_i τ_i."""
    stacked, w = _stack(deltas, weights)
    return (stacked * w).sum(dim=0)


def magnitude_prune(deltas: Sequence[Tensor], weights: Sequence[float] | Tensor, density: float) -> Tensor:
    """Magnitude pruning then task arithmetic: τ = Σ_i w_i trim(τ_i)."""
    return task_arithmetic([trim(t, density) for t in deltas], weights)


def ties(deltas: Sequence[Tensor], weights: Sequence[float] | Tensor, density: float,
         majority_sign_method: str = "total") -> Tensor:
    """TIES: trim each τ_i to its top-density magnitudes, elect a sign per entry, take the disjoint mean of w_i t_i."""
    _check_sign_method(majority_sign_method)
    stacked, w = _stack([trim(t, density) for t in deltas], weights)
    return disjoint_mean(stacked * w, elect_sign(stacked, majority_sign_method))


def dare(deltas: Sequence[Tensor], weights: Sequence[float] | Tensor, density: float, sign_election: bool = False,
         majority_sign_method: str = "total", generator: Optional[torch.Generator] = None) -> Tensor:
    """DARE: drop entries with prob p = 1 - density, rescale by 1/(1-p); then Σ w_i t_i, or TIES's sign election."""
    _check_sign_method(majority_sign_method)
    stacked, w = _stack([drop_and_rescale(t, density, generator) for t in deltas], weights)
    if sign_election:
        return disjoint_mean(stacked * w, elect_sign(stacked, majority_sign_method))
    return (stacked * w).sum(dim=0)


def merge_tensors(method: str, deltas: Sequence[Tensor], weights: Sequence[float] | Tensor,
                  density: Optional[float] = None, majority_sign_method: str = "total") -> Tensor:
    """One merge by name: "linear" (task arithmetic), "ties", "dare_linear", "dare_ties" or "magnitude_prune"."""
    if method == "linear":
        return task_arithmetic(deltas, weights)
    if method == "ties":
        return ties(deltas, weights, density, majority_sign_method)
    if method in ("dare_linear", "dare_ties"):
        return dare(deltas, weights, density, sign_election=method == "dare_ties",
                    majority_sign_method=majority_sign_method)
    if method == "magnitude_prune":
        return magnitude_prune(deltas, weights, density)
    raise ValueError(f"Unknown merge {method!r}; choose one of {list(FACTOR_TYPES)}")


# ---------------------------------------------------------------------------------------------------------------
# A new LoRA adapter from merged ones
# ---------------------------------------------------------------------------------------------------------------

def _cat_factors(layer: LoRALinear, adapters: list[str], weights: list[float]) -> tuple[Tensor, Tensor]:
    """A = [w_i s_i A_i] stacked by rows, B = [B_i] side by side: B A = Σ w_i s_i B_i A_i."""
    pairs = [(a, w) for a, w in zip(adapters, weights) if a in layer.lora_A]
    a = torch.cat([layer.lora_A[n].weight * (w * layer.scaling[n]) for n, w in pairs], dim=0)
    b = torch.cat([layer.lora_B[n].weight for n, _ in pairs], dim=1)
    return a, b


def _separate_factors(layer: LoRALinear, method: str, adapters: list[str], weights: list[float],
                      density: Optional[float], majority_sign_method: str) -> tuple[Tensor, Tensor]:
    """Merge the A's with weights sign(c) sqrt|c| and the B's with sqrt|c|, c = w s (the signs land on A only)."""
    pairs = [(a, w * layer.scaling[a]) for a, w in zip(adapters, weights) if a in layer.lora_A]
    root = [math.sqrt(abs(c)) for _, c in pairs]
    a_weights = [r if c >= 0 else -r for r, (_, c) in zip(root, pairs)]
    dtype = layer.lora_A[pairs[0][0]].weight.dtype
    a = merge_tensors(method, [layer.lora_A[n].weight for n, _ in pairs], a_weights, density, majority_sign_method)
    b = merge_tensors(method, [layer.lora_B[n].weight for n, _ in pairs], root, density, majority_sign_method)
    return a.to(dtype), b.to(dtype)


def _svd_factors(layer: LoRALinear, method: str, adapters: list[str], weights: list[float], rank: int,
                 density: Optional[float], majority_sign_method: str, svd_clamp: Optional[float],
                 full_matrices: bool, driver: Optional[str]) -> tuple[Tensor, Tensor]:
    """ΔW = merge(w_i, ΔW_i), then its best rank-``rank`` factors: B = U_r S_r, A = V_r^T (optionally clamped)."""
    pairs = [(a, w) for a, w in zip(adapters, weights) if a in layer.lora_A]
    # merged in the base weight's layout (in x out for a Conv1D, so DARE draws its masks like peft), then out x in
    delta = merge_tensors(method, [layer.delta_weight(n) for n, _ in pairs], [w for _, w in pairs], density,
                          majority_sign_method)
    delta = delta.T if layer.fan_in_fan_out else delta
    u, s, vh = torch.linalg.svd(delta, full_matrices=full_matrices, driver=driver)
    b, a = u[:, :rank] * s[:rank], vh[:rank, :]
    if svd_clamp is not None:  # clip outliers: |entries| above the svd_clamp quantile of all B and A entries
        high = torch.quantile(torch.cat([b.flatten(), a.flatten()]), svd_clamp)
        b, a = b.clamp(-high, high), a.clamp(-high, high)
    return a, b


def _merged_targets(configs: list[LoRAConfig], paths: list[str]) -> str | list[str]:
    """The new config's target_modules: the regexes joined with |, the name lists united (else the paths)."""
    targets = [c.target_modules for c in configs]
    if all(isinstance(t, str) for t in targets):
        return "|".join(f"({t})" for t in targets)
    if not any(isinstance(t, str) for t in targets):
        return list(dict.fromkeys(name for t in targets for name in t))
    return list(paths)


def _check_weights(adapters: list[str], weights: Iterable[float]) -> list[float]:
    weights = list(weights)
    if len(weights) != len(adapters):
        raise ValueError(f"Give one weight per adapter: {len(adapters)} adapters {adapters}, "
                         f"{len(weights)} weights {weights}")
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
            raise ValueError(f"Weights must be finite numbers (negative subtracts a task), got {weights}")
    return [float(w) for w in weights]


def _new_rank(combination_type: str, adapters: list[str], ranks: list[int], svd_rank: Optional[int]) -> int:
    """Equal ranks for the factor merges, their sum for "cat", svd_rank (default the largest) for SVD."""
    if combination_type in FACTOR_TYPES:
        if len(set(ranks)) != 1:
            raise ValueError(f"combination_type={combination_type!r} merges the A's and B's entry by entry, so all "
                             f"adapters need the same rank r; got {dict(zip(adapters, ranks))}. Use 'cat' or 'svd' "
                             f"(or a '*_svd' type) for different ranks.")
        return ranks[0]
    if combination_type == "cat":
        return sum(ranks)
    if svd_rank is None:
        return max(ranks)
    if isinstance(svd_rank, bool) or not isinstance(svd_rank, int) or svd_rank < 1:
        raise ValueError(f"svd_rank must be an integer >= 1, got {svd_rank!r}")
    return svd_rank


def add_weighted_lora(model: torch.nn.Module, adapters: list[str], weights: list[float], adapter_name: str,
                      combination_type: str = "linear", density: Optional[float] = None,
                      majority_sign_method: str = "total", svd_rank: Optional[int] = None,
                      svd_clamp: Optional[float] = None, svd_full_matrices: bool = True,
                      svd_driver: Optional[str] = None) -> list[str]:
    """Add LoRA adapter ``adapter_name`` (inactive) merged from ``adapters`` like peft; return its module paths."""
    adapters = [adapters] if isinstance(adapters, str) else list(adapters)
    ledger = _ledger(model) or Ledger("LoRA adapter")
    if not adapters:
        raise ValueError("Give at least one LoRA adapter to merge")
    unknown = [a for a in adapters if a not in ledger.configs]
    if unknown:
        raise ValueError(f"No LoRA adapter named {unknown}; this model has: {ledger.names()}")
    weights = _check_weights(adapters, weights)
    if combination_type not in COMBINATION_TYPES:
        raise ValueError(f"Unknown combination_type {combination_type!r}; choose one of {list(COMBINATION_TYPES)}")
    ledger.require_new(adapter_name)
    _check_sign_method(majority_sign_method)
    if density is not None:
        _check_density(density)
    if svd_clamp is not None and (isinstance(svd_clamp, bool) or not isinstance(svd_clamp, (int, float))
                                  or not 0 <= svd_clamp <= 1):
        raise ValueError(f"svd_clamp is a quantile and must be in [0, 1], got {svd_clamp!r}")
    if len(adapters) == 1:
        combination_type = "linear"  # as peft: one adapter is only rescaled, B A = w s B_1 A_1 exactly
    method = "linear" if combination_type in ("cat", "svd") else combination_type.removesuffix("_svd")
    if method != "linear" and density is None:
        raise ValueError(f"combination_type={combination_type!r} prunes: give density in (0, 1], the fraction of "
                         f"entries to keep (e.g. 0.5)")

    configs = [ledger.configs[a] for a in adapters]
    rank = _new_rank(combination_type, adapters, [c.r for c in configs], svd_rank)
    layers = lora_layers(model)
    paths = [p for p in layers if any(p in ledger.paths[a] for a in adapters)]  # model order: DARE draws like peft
    variants = sorted({type(layers[p]).__name__ for p in paths if type(layers[p]) is not LoRALinear})
    if variants:
        raise ValueError(f"add_weighted_lora merges plain LoRA layers (update s B A only); these adapters live in "
                         f"{variants}")
    for path in paths:
        limit = min(layers[path].in_features, layers[path].out_features)
        if rank > limit:
            raise ValueError(f"combination_type={combination_type!r} gives rank {rank}, more than layer {path!r} "
                             f"({layers[path].in_features}->{layers[path].out_features}) allows ({limit}); "
                             f"use 'svd' with svd_rank <= {limit}")
    config = LoRAConfig(rank, rank, configs[0].dropout, False, _merged_targets(configs, paths))
    _inject(model, adapter_name, paths, config, merge_on_eval=False)

    with torch.no_grad():
        for path in paths:
            layer = layers[path]
            if combination_type == "cat":
                a, b = _cat_factors(layer, adapters, weights)
            elif combination_type in FACTOR_TYPES:
                a, b = _separate_factors(layer, method, adapters, weights, density, majority_sign_method)
            else:
                a, b = _svd_factors(layer, method, adapters, weights, rank, density, majority_sign_method,
                                    svd_clamp, svd_full_matrices, svd_driver)
            new_a, new_b = layer.lora_A[adapter_name].weight, layer.lora_B[adapter_name].weight
            new_a.zero_()[: a.shape[0]] = a.to(new_a.dtype)       # "cat" on a layer that lacks some adapters
            new_b.zero_()[:, : b.shape[1]] = b.to(new_b.dtype)    # fills only the first rows / columns
    return paths
