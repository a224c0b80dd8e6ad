"""Helpers shared by the course's model configs and modules."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from torch import nn


def validate_sizes(cfg: Any) -> None:
    """Shared checks for the transformer configs; raises ValueError saying what is allowed."""
    for name in ("vocab_size", "max_len", "d_model", "n_layers", "n_heads", "d_ff"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{type(cfg).__name__}.{name} must be a positive integer (>= 1), got {value!r}")
    if cfg.d_model % cfg.n_heads != 0:
        divisors = [h for h in range(1, cfg.d_model + 1) if cfg.d_model % h == 0]
        raise ValueError(
            f"{type(cfg).__name__}: d_model ({cfg.d_model}) must be divisible by n_heads ({cfg.n_heads}); "
            f"allowed n_heads for d_model={cfg.d_model}: {divisors}"
        )
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"{type(cfg).__name__}.dropout must be in [0, 1), got {cfg.dropout!r}")
    if not 0 <= cfg.pad_token_id < cfg.vocab_size:
        raise ValueError(f"{type(cfg).__name__}.pad_token_id must be in [0, {cfg.vocab_size}), got {cfg.pad_token_id!r}")


def config_from_dict(cls: type, d: dict[str, Any]) -> Any:
    """Build a config dataclass from a dict, refusing unknown keys."""
    allowed = {f.name for f in fields(cls)}
    unknown = set(d) - allowed
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} keys {sorted(unknown)}; allowed keys: {sorted(allowed)}")
    return cls(**d)


def init_weights(module: nn.Module) -> None:
    """GPT-2/BERT style init: N(0, 0.02) for Linear and Embedding weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class ConfigMixin:
    """to_dict / from_dict for the model config dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (JSON friendly)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """Inverse of :meth:`to_dict`; unknown keys are an error that lists the allowed ones."""
        return config_from_dict(cls, d)


@dataclass
class BackboneConfig(ConfigMixin):
    """The transformer shape shared by the GPT and the encoder configs (validated on creation)."""

    vocab_size: int
    max_len: int = 64
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 512
    dropout: float = 0.1
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        validate_sizes(self)
