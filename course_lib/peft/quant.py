"""4-bit NormalFloat (NF4) quantization and QLoRA (Dettmers et al. 2023), in plain PyTorch (runs on CPU).

**Block-wise absmax quantization.** The weight is flattened and cut into blocks of
``block_size`` values (64 by default). Each block ``x`` keeps one fp32 scale, its absmax
``c = max |x_i|``, and every value is replaced by the index of the nearest level of a
16-entry *code book* ``q`` (levels sorted, in ``[-1, 1]``)::

    code_i = argmin_j |x_i / c - q_j|         (4 bits: 0..15)
    x_i  ~=  q[code_i] * c                    (dequantize)

so the error of one value is at most ``c * (largest gap between adjacent levels) / 2``.
Two 4-bit codes are packed into one byte (high nibble first). A weight whose size is not a
multiple of ``block_size`` gets a last, shorter block: it is padded with zeros for the
computation (zeros never change an absmax) and the padding is not stored.

**NF4.** Pre-trained weights are roughly normal, so QLoRA puts the levels at quantiles of
N(0, 1) rather than on a uniform grid: every level is then used about equally often. To
have an exact zero (padding, sparse weights) the code is asymmetric: 8 positive levels from
``Phi^-1(linspace(delta, 1/2, 9)[:-1])``, 7 negative levels from
``-Phi^-1(linspace(delta, 1/2, 8)[:-1])``, plus 0, all divided by the largest value so the
book spans exactly ``[-1, 1]``. The outermost quantile cannot be ``delta = 1`` (it would be
infinite); like bitsandbytes we use ``delta = 1 - (1/(2*15) + 1/(2*16))/2 = 0.9677083``,
the mean of the last bin centres of a 15- and a 16-bin quantile grid. This reproduces the
published bitsandbytes NF4 table to ~2e-7. :func:`int4_code_book` is the uniform
counterpart, ``k/7`` for ``k = -7..7`` (15 levels, the usual symmetric absmax int4), and
:func:`fp4_code_book` is bitsandbytes' FP4 (E2M1), the other 4-bit float the QLoRA paper compares.

**Memory per parameter.** 4 bits of code plus the block's fp32 absmax::

    bytes/param = 1/2 + 4/block_size                            = 0.5625  (4.5 bits) for 64

**Double quantization** (QLoRA) quantizes the absmax values themselves: subtract their
mean ``m`` (one fp32 for the whole tensor), then quantize ``absmax - m`` block-wise in groups
of ``dq_block_size`` (256) with symmetric linear 8-bit codes and one fp32 absmax per group::

    bytes/param = 1/2 + 1/block_size + 4/(block_size*dq_block_size) (+ 4/numel)
                = 0.5 + 0.015625 + 0.000244                  = 0.5159  (4.127 bits)

bitsandbytes uses its 8-bit "dynamic" float code for this second step; a linear int8 code is
simpler and its error, at most ``group_absmax / 254`` per scale, is far below the 4-bit error.

**QLoRA.** :func:`quantize_model` replaces ``nn.Linear`` layers by :class:`Linear4bit`, which
holds the packed codes and scales as *buffers* (they move with ``.to()`` and are saved in the
``state_dict``, but are not parameters, so nothing trains them) and dequantizes the weight on
the fly in ``forward``. LoRA (:mod:`course_lib.peft.lora`) then wraps those layers: only A and
B (kept in the compute dtype, fp32 here) are trained, gradients flow *through* the frozen
4-bit weight. A LoRA cannot be merged into a 4-bit weight (re-quantizing would wash the
update out): :func:`dequantize_model` first, or keep the adapter unmerged.
:func:`~course_lib.peft.qlora.prepare_qlora` does both steps (this module knows nothing of LoRA).

The code book (16 floats) is a constant of the method, like in bitsandbytes: each layer keeps
a non-persistent copy for its device, and it is not counted in the byte figures.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .spine import match_targets, set_submodule

CODE_BOOKS = ("nf4", "int4", "fp4")
NF4_OFFSET = 1 - 0.5 * (1 / (2 * 15) + 1 / (2 * 16))  # 0.9677083...: see the module docstring
DEFAULT_SKIP = ("classifier", "lm_head", "score", "head")


# ----------------------------------------------------------------------------- code books

def nf4_code_book() -> Tensor:
    """The 16 NormalFloat4 levels (sorted, float32, in [-1, 1], with exact -1, 0 and 1)."""
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    positive = normal.icdf(torch.linspace(NF4_OFFSET, 0.5, 9, dtype=torch.float64)[:-1])   # 8 levels > 0
    negative = -normal.icdf(torch.linspace(NF4_OFFSET, 0.5, 8, dtype=torch.float64)[:-1])  # 7 levels < 0
    levels = torch.cat([negative, torch.zeros(1, dtype=torch.float64), positive]).sort().values
    return (levels / levels.max()).float()


def int4_code_book() -> Tensor:
    """Symmetric uniform 4-bit levels k/7, k = -7..7 (15 levels, float32, with exact -1, 0 and 1)."""
    return torch.arange(-7, 8, dtype=torch.float64).div(7).float()


def fp4_code_book() -> Tensor:
    """bitsandbytes' FP4 levels (sorted, float32, in [-1, 1]): E2M1 with exponent bias 3 and a subnormal.

    The positive magnitudes are 0, 0.0625, 2, 3, 4, 6, 8, 12, divided by the largest (12); the sign bit gives
    their negatives, so zero appears twice (+0 and -0) and the 16 codes hold 15 distinct values.
    """
    magnitudes = torch.tensor([0.0, 0.0625, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0], dtype=torch.float64) / 12
    return torch.cat([-magnitudes, magnitudes]).sort().values.float()


@lru_cache(maxsize=None)
def _cpu_code_book(name: str) -> Tensor:
    if name == "nf4":
        return nf4_code_book()
    if name == "int4":
        return int4_code_book()
    if name == "fp4":
        return fp4_code_book()
    raise ValueError(f"Unknown code book {name!r}; allowed: {list(CODE_BOOKS)}")


def get_code_book(name: str, device: torch.device | str | None = None) -> Tensor:
    """The code book called ``name`` ("nf4", "int4" or "fp4") on ``device``."""
    if not isinstance(name, str):
        raise ValueError(f"code_book must be one of {list(CODE_BOOKS)}, got {name!r}")
    return _cpu_code_book(name.lower()).to(device or "cpu", copy=True)


def max_half_gap(name: str) -> float:
    """Half the largest gap between adjacent levels: the worst rounding error, in units of a block's absmax."""
    levels = get_code_book(name)
    return float((levels[1:] - levels[:-1]).max()) / 2


# ----------------------------------------------------------------------------- packing

def pack_4bit(codes: Tensor) -> Tensor:
    """Pack integer codes 0..15 two per byte (first code in the high nibble); odd lengths get a zero pad."""
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise TypeError(f"pack_4bit needs an integer tensor of codes 0..15, got dtype {codes.dtype}")
    codes = codes.reshape(-1)
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) > 15):
        raise ValueError(f"4-bit codes must lie in 0..15, got values in {int(codes.min())}..{int(codes.max())}")
    codes = codes.to(torch.uint8)
    if codes.numel() % 2:
        codes = torch.cat([codes, codes.new_zeros(1)])
    return (codes[0::2] << 4) | codes[1::2]


def unpack_4bit(packed: Tensor, n: int) -> Tensor:
    """Inverse of :func:`pack_4bit`: the first ``n`` codes (uint8, 0..15)."""
    if packed.dtype != torch.uint8:
        raise TypeError(f"unpack_4bit needs a uint8 tensor, got dtype {packed.dtype}")
    if not 0 <= n <= 2 * packed.numel():
        raise ValueError(f"n must be in 0..{2 * packed.numel()} for {packed.numel()} packed bytes, got {n}")
    packed = packed.reshape(-1)
    return torch.stack([packed >> 4, packed & 0x0F], dim=1).reshape(-1)[:n]


# ----------------------------------------------------------------------------- quantize / dequantize

@dataclass
class QuantizedTensor:
    """Block-wise quantized tensor: packed 4-bit codes plus per-block absmax (fp32, or 8-bit if double-quantized)."""

    packed: Tensor                       # uint8 [ceil(n / 2)], two codes per byte
    absmax: Optional[Tensor]             # fp32 [n_blocks]; None with double quantization
    absmax_q: Optional[Tensor]           # uint8 [n_blocks]: 8-bit codes of absmax - mean (double quant)
    absmax_scale: Optional[Tensor]       # fp32 [ceil(n_blocks / dq_block_size)] (double quant)
    absmax_mean: Optional[Tensor]        # fp32 scalar: mean of the absmax values (double quant)
    shape: torch.Size
    dtype: torch.dtype
    block_size: int
    code_book: str
    dq_block_size: int = 256

    @property
    def numel(self) -> int:
        """Number of quantized values (the original tensor's numel)."""
        return math.prod(self.shape)

    @property
    def double_quant(self) -> bool:
        """True if the absmax values are themselves 8-bit quantized."""
        return self.absmax_q is not None

    def tensors(self) -> dict[str, Tensor]:
        """Every stored tensor, by field name."""
        names = ("packed", "absmax", "absmax_q", "absmax_scale", "absmax_mean")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def nbytes(self) -> int:
        """Bytes of all stored tensors (codes + scales + offsets)."""
        return sum(t.numel() * t.element_size() for t in self.tensors().values())

    def bits_per_param(self) -> float:
        """Stored bits per original value."""
        return 8 * self.nbytes() / self.numel if self.numel else 0.0

    def block_absmax(self) -> Tensor:
        """The per-block absmax as used by dequantize (fp32; exact, or reconstructed from 8 bits)."""
        if not self.double_quant:
            return self.absmax.float()
        return _dequantize_absmax(self.absmax_q, self.absmax_scale, self.absmax_mean, self.dq_block_size)


def _check_block_size(block_size: int, what: str = "block_size", even: bool = True) -> None:
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1 or (even and block_size % 2):
        rule = "a positive even integer" if even else "a positive integer"
        raise ValueError(f"{what} must be {rule} (e.g. 64), got {block_size!r}")


def _blocks(flat: Tensor, block_size: int) -> Tensor:
    """Zero-pad a flat tensor to a multiple of block_size and view it as [n_blocks, block_size]."""
    pad = (-flat.numel()) % block_size
    return F.pad(flat, (0, pad)).view(-1, block_size)


def _quantize_absmax(absmax: Tensor, dq_block_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Double quantization: (absmax - mean) in groups, symmetric linear 8-bit, stored as uint8 (code + 128)."""
    mean = absmax.mean()
    groups = _blocks(absmax - mean, dq_block_size)
    scale = groups.abs().amax(dim=1)
    q = torch.round(groups / torch.where(scale > 0, scale, 1.0)[:, None] * 127)
    absmax_q = (q + 128).to(torch.uint8).reshape(-1)[:absmax.numel()]
    return absmax_q, scale, mean


def _dequantize_absmax(absmax_q: Tensor, scale: Tensor, mean: Tensor, dq_block_size: int) -> Tensor:
    q = _blocks(absmax_q.float() - 128, dq_block_size)
    return (q * (scale.float()[:, None] / 127)).reshape(-1)[:absmax_q.numel()] + mean.float()


def quantize(weight: Tensor, code_book: str = "nf4", block_size: int = 64, double_quant: bool = False,
             dq_block_size: int = 256) -> QuantizedTensor:
    """Block-wise absmax 4-bit quantization of ``weight`` with code book "nf4", "int4" or "fp4"."""
    if not isinstance(weight, Tensor) or not weight.is_floating_point():
        raise TypeError(f"quantize needs a floating-point tensor, got "
                        f"{weight.dtype if isinstance(weight, Tensor) else type(weight).__name__}")
    _check_block_size(block_size)
    _check_block_size(dq_block_size, "dq_block_size", even=False)
    levels = get_code_book(code_book, weight.device)
    if weight.numel() == 0:
        raise ValueError("Cannot quantize an empty tensor")
    if not torch.isfinite(weight).all():
        raise ValueError("Cannot quantize a tensor with inf or NaN values")
    flat = weight.detach().reshape(-1).float()
    blocks = _blocks(flat, block_size)
    absmax = blocks.abs().amax(dim=1)
    normed = blocks / torch.where(absmax > 0, absmax, 1.0)[:, None]  # all-zero blocks stay zero
    midpoints = (levels[1:] + levels[:-1]) / 2
    codes = torch.bucketize(normed.reshape(-1)[:flat.numel()], midpoints)  # index of the nearest level
    absmax_q = absmax_scale = absmax_mean = None
    if double_quant:
        absmax_q, absmax_scale, absmax_mean = _quantize_absmax(absmax, dq_block_size)
        absmax = None
    return QuantizedTensor(pack_4bit(codes), absmax, absmax_q, absmax_scale, absmax_mean, weight.shape,
                           weight.dtype, block_size, code_book.lower(), dq_block_size)


def _dequantize(q: QuantizedTensor, levels: Tensor, dtype: Optional[torch.dtype] = None) -> Tensor:
    values = levels[unpack_4bit(q.packed, q.numel).long()]
    out = (_blocks(values, q.block_size) * q.block_absmax()[:, None]).reshape(-1)[:q.numel]
    return out.view(q.shape).to(dtype or q.dtype)


def dequantize(q: QuantizedTensor, dtype: Optional[torch.dtype] = None) -> Tensor:
    """The reconstructed tensor, in the original shape and dtype (or ``dtype``)."""
    return _dequantize(q, get_code_book(q.code_book, q.packed.device), dtype)


# ----------------------------------------------------------------------------- error helpers

def _errors(weight: Tensor, approx: Tensor) -> dict[str, float]:
    err = (approx.float() - weight.float()).abs()
    return {"mean_abs_error": float(err.mean()), "rmse": float(err.pow(2).mean().sqrt()),
            "max_abs_error": float(err.max())}


@torch.no_grad()
def reconstruction_error(weight: Tensor, code_book: str = "nf4", block_size: int = 64,
                         double_quant: bool = False) -> dict[str, float]:
    """Mean abs error, RMSE and max abs error of a quantize -> dequantize round trip (+ bits per param)."""
    q = quantize(weight, code_book, block_size, double_quant)
    return _errors(weight, dequantize(q, torch.float32)) | {"bits_per_param": q.bits_per_param()}


@torch.no_grad()
def cast_error(weight: Tensor, dtype: torch.dtype) -> dict[str, float]:
    """The same errors for a plain cast to ``dtype`` (e.g. torch.float16, torch.bfloat16) and back."""
    if not dtype.is_floating_point:
        raise ValueError(f"cast_error needs a floating dtype (torch.float16, torch.bfloat16, ...), got {dtype}")
    bits = torch.finfo(dtype).bits
    return _errors(weight, weight.to(dtype).float()) | {"bits_per_param": float(bits)}


# ----------------------------------------------------------------------------- Linear4bit

class Linear4bit(nn.Module):
    """A frozen nn.Linear whose weight is stored block-wise in 4 bits and dequantized on the fly in forward."""

    stores_quantized_weight = True  # count_parameters counts its packed weight as frozen parameters

    def __init__(self, weight: QuantizedTensor, bias: Optional[Tensor] = None,
                 compute_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if len(weight.shape) != 2:
            raise ValueError(f"Linear4bit needs a 2-D (out x in) quantized weight, got shape {tuple(weight.shape)}")
        if not compute_dtype.is_floating_point:
            raise ValueError(f"compute_dtype must be a floating dtype (torch.float32, torch.bfloat16, ...), "
                             f"got {compute_dtype}")
        self.out_features, self.in_features = weight.shape
        self.block_size, self.dq_block_size, self.code_book = weight.block_size, weight.dq_block_size, weight.code_book
        self.double_quant, self.weight_dtype, self.compute_dtype = weight.double_quant, weight.dtype, compute_dtype
        for name in ("packed", "absmax", "absmax_q", "absmax_scale", "absmax_mean"):
            self.register_buffer(name, getattr(weight, name))  # None buffers are not stored
        self.register_buffer("code", get_code_book(weight.code_book, weight.packed.device), persistent=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().to(compute_dtype).clone(), requires_grad=False)

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, code_book: str = "nf4", block_size: int = 64, double_quant: bool = True,
                    compute_dtype: torch.dtype = torch.float32, dq_block_size: int = 256) -> "Linear4bit":
        """Quantize an nn.Linear's weight (the bias stays in compute_dtype, frozen)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"Linear4bit.from_linear needs an nn.Linear, got {type(linear).__name__}")
        q = quantize(linear.weight, code_book, block_size, double_quant, dq_block_size)
        return cls(q, linear.bias, compute_dtype)

    def quantized(self) -> QuantizedTensor:
        """The stored weight as a QuantizedTensor (sharing this layer's buffers)."""
        return QuantizedTensor(self.packed, self.absmax, self.absmax_q, self.absmax_scale, self.absmax_mean,
                               torch.Size((self.out_features, self.in_features)), self.weight_dtype,
                               self.block_size, self.code_book, self.dq_block_size)

    def dequantized_weight(self, dtype: Optional[torch.dtype] = None) -> Tensor:
        """The reconstructed out x in weight, in ``dtype`` (default: compute_dtype)."""
        return _dequantize(self.quantized(), self.code, dtype or self.compute_dtype)

    def weight_nbytes(self) -> int:
        """Bytes of the stored weight (codes + scales), without the bias."""
        return self.quantized().nbytes()

    def forward(self, x: Tensor) -> Tensor:
        """F.linear with the weight dequantized to compute_dtype; the output has the input's dtype."""
        bias = None if self.bias is None else self.bias.to(self.compute_dtype)
        with torch.no_grad():  # the weight is a constant; gradients still flow to x
            weight = self.dequantized_weight()
        return F.linear(x.to(self.compute_dtype), weight, bias).to(x.dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"code_book={self.code_book}, block_size={self.block_size}, double_quant={self.double_quant}, "
                f"compute_dtype={self.compute_dtype}")


# ----------------------------------------------------------------------------- whole models

def _linear_paths(model: nn.Module) -> list[str]:
    """nn.Linear layers that can be quantized: not LoRA's own A/B, not nn.MultiheadAttention's out_proj."""
    mha = [n for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]
    return [n for n, m in model.named_modules() if n and isinstance(m, nn.Linear)
            and not re.search(r"(^|\.)lora_[AB]\.", n) and not any(n.startswith(p + ".") for p in mha)]


def _tied_paths(model: nn.Module, paths: list[str]) -> set[str]:
    """Layers whose weight is shared with another module (e.g. an LM head tied to the embeddings)."""
    uses: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        uses[id(p)] = uses.get(id(p), 0) + 1
    return {n for n in paths if uses.get(id(model.get_submodule(n).weight), 0) > 1}


def _skipped(path: str, skip: Iterable[str]) -> bool:
    """True if a whole dotted part of ``path`` (or a dotted run of parts) equals one of ``skip``."""
    return any(re.search(rf"(^|\.){re.escape(s)}($|\.)", path) for s in skip)


def quantize_model(model: nn.Module, target_modules: str | Iterable[str] | None = None,
                   skip: Iterable[str] = DEFAULT_SKIP, code_book: str = "nf4", block_size: int = 64,
                   double_quant: bool = True, dq_block_size: int = 256,
                   compute_dtype: torch.dtype = torch.float32) -> list[str]:
    """Replace nn.Linear layers by Linear4bit in place; return the quantized module paths.

    ``target_modules``: None (every nn.Linear), a regex (fullmatch on the path) or a list of
    names / path suffixes, like LoRA's. Layers with a dotted name part in ``skip`` (task and LM
    heads by default) and layers whose weight is tied to another module (the GPT ``lm_head``
    shares ``tok_embed.weight``) are left in full precision: quantizing a tied weight would
    either break the tie or quantize the embedding too.
    """
    _check_block_size(block_size)
    _check_block_size(dq_block_size, "dq_block_size", even=False)
    get_code_book(code_book)  # validate everything before changing the model
    if not isinstance(compute_dtype, torch.dtype) or not compute_dtype.is_floating_point:
        raise ValueError(f"compute_dtype must be a floating dtype (torch.float32, torch.bfloat16, ...), "
                         f"got {compute_dtype!r}")
    skip = [skip] if isinstance(skip, str) else list(skip)
    candidates = _linear_paths(model)
    if not candidates:
        raise ValueError("The model has no nn.Linear layer to quantize (already quantized ones are Linear4bit).")
    chosen = ({"all nn.Linear": candidates} if target_modules is None
              else match_targets(candidates, target_modules, "nn.Linear"))
    tied = _tied_paths(model, candidates)
    keep = [p for p in candidates if any(p in paths for paths in chosen.values())
            and p not in tied and not _skipped(p, skip)]
    for t, paths in chosen.items():
        if target_modules is not None and not any(p in keep for p in paths):
            raise ValueError(f"Target {t!r} only matched skipped layers {paths[:4]} (tied weights: "
                             f"{sorted(tied & set(paths))}; skip patterns {skip}); pass skip=() to quantize heads.")
    for p in keep:  # a wrapper (LoRALinear) that merged its updates into this weight would lose them
        parent = model.get_submodule(p.rpartition(".")[0]) if "." in p else None
        if getattr(parent, "merged", None):
            raise ValueError(f"{p!r} holds merged LoRA adapters {parent.merged}: unmerge_lora before quantizing.")
    for p in keep:
        linear = model.get_submodule(p)
        set_submodule(model, p, Linear4bit.from_linear(linear, code_book, block_size, double_quant,
                                                     compute_dtype, dq_block_size).train(linear.training))
    return keep


@torch.no_grad()
def dequantize_model(model: nn.Module) -> list[str]:
    """Replace every Linear4bit by an nn.Linear holding its dequantized weight (frozen, like before); return paths."""
    paths = [n for n, m in model.named_modules() if isinstance(m, Linear4bit)]
    for path in paths:
        q = model.get_submodule(path)
        linear = nn.Linear(q.in_features, q.out_features, bias=q.bias is not None,
                           device=q.packed.device, dtype=q.weight_dtype)
        linear.weight.copy_(q.dequantized_weight(q.weight_dtype))
        linear.weight.requires_grad_(False)
        if q.bias is not None:
            linear.bias.copy_(q.bias)
            linear.bias.requires_grad_(q.bias.requires_grad)
        set_submodule(model, path, linear.train(q.training))
    return paths


def _unique_params(model: nn.Module) -> list[Tensor]:
    seen: dict[int, Tensor] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        seen.setdefault(id(p), p)
    return list(seen.values())


def model_weight_bytes(model: nn.Module) -> dict[str, int]:
    """Bytes of the parameters (tied ones once) and of the Linear4bit codes and scales, plus the total."""
    params = sum(p.numel() * p.element_size() for p in _unique_params(model))
    codes = scales = 0
    for m in model.modules():
        if isinstance(m, Linear4bit):
            tensors = m.quantized().tensors()
            codes += tensors.pop("packed").nbytes
            scales += sum(t.nbytes for t in tensors.values())
    return {"params": params, "4-bit weights": codes, "quant scales": scales, "total": params + codes + scales}


@torch.no_grad()
def cast_model_bytes(model: nn.Module, dtype: torch.dtype) -> int:
    """Bytes of the parameters (tied ones once) if the floating ones were cast to ``dtype``, measured by casting."""
    if not dtype.is_floating_point:
        raise ValueError(f"cast_model_bytes needs a floating dtype (torch.float16, torch.bfloat16, ...), got {dtype}")
    return sum(p.detach().to(dtype).nbytes if p.is_floating_point() else p.nbytes for p in _unique_params(model))
