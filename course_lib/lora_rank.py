"""LoRA rank sweeps on the real track: one method spec per (rank, scaling rule), the rules anchored at one rank.

LoRA multiplies its update by ``s``: ``h = W0 x + s B A x``. Three rules for ``s`` as the rank changes, anchored so
that all three give ``s = 2`` at ``ANCHOR_RANK = 8`` (where they are the same model):

- ``"α = 2r"``: ``s = 2`` at every rank (peft users' common ``lora_alpha = 2 * r``; the course's default);
- ``"α/r, α = 16"``: the LoRA paper's ``s = α / r`` with a fixed ``α``: the update shrinks as ``1/r``;
- ``"rsLoRA, α = 2√8"``: rank-stabilised LoRA (Kalajdzievski 2023), ``s = α / sqrt(r)``.
"""

from __future__ import annotations

import math
from typing import Iterable

from .benchmark import MethodSpec

ANCHOR_RANK = 8
SCALING_RULES = ("α = 2r", "α/r, α = 16", "rsLoRA, α = 2√8")
TARGETS = ("query", "value")


def _check(rule: str, r: int) -> None:
    if rule not in SCALING_RULES:
        raise ValueError(f"unknown scaling rule {rule!r}; allowed: {', '.join(SCALING_RULES)}")
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"rank r must be an int >= 1, got {r!r}")


def multiplier(rule: str, r: int) -> float:
    """The scaling s of a rank-r LoRA under ``rule`` (2 at the anchor rank for every rule)."""
    _check(rule, r)
    if rule == "α = 2r":
        return 2.0
    if rule == "α/r, α = 16":
        return 2.0 * ANCHOR_RANK / r
    return 2.0 * math.sqrt(ANCHOR_RANK) / math.sqrt(r)


def rank_spec(r: int, rule: str = "α = 2r", targets: Iterable[str] = TARGETS) -> MethodSpec:
    """The real-track LoRA of rank r under ``rule``; at the anchor rank every rule gives the default spec."""
    _check(rule, r)
    options: dict = {"target_modules": list(targets), "r": r}
    if rule == "α/r, α = 16" and r != ANCHOR_RANK:
        options["alpha"] = 2 * ANCHOR_RANK
    elif rule == "rsLoRA, α = 2√8" and r != ANCHOR_RANK:
        options.update(alpha=2 * math.sqrt(ANCHOR_RANK), use_rslora=True)
    name = f"LoRA r={r}" if "alpha" not in options else f"LoRA r={r} ({rule})"
    return MethodSpec(name, "lora", options)
