"""One training loop for every notebook: AdamW, warmup + cosine decay, clipping, eval, bf16 autocast.

Works for any model whose ``forward(**batch)`` returns an object with ``.loss``
and ``.logits`` — the course's models and Hugging Face models alike — so the
same loop pretrains the GPT and the encoder, fine-tunes classifiers, instruction-tunes
causal LMs and trains the translation models of notebook 12.

Determinism: the data order comes from a generator seeded with ``config.seed``, and the
global torch RNG (dropout, layer-wise teacher forcing) is seeded with it when training
starts, so one config gives one run.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .peft.spine import regularization_loss
from .profiles import get_device

PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run."""

    steps: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 25
    eval_batch_size: int = 128
    seed: int = 0
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW's; the Transformer paper (notebook 12) uses (0.9, 0.98)
    precision: str = "fp32"  # "bf16": forward and loss under bfloat16 autocast (weights stay fp32)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be an integer >= 1, got {value!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"TrainConfig.seed must be an integer >= 0, got {self.seed!r}.")
        for name in ("lr", "weight_decay", "warmup_ratio", "min_lr_ratio", "grad_clip"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"TrainConfig.{name} must be a finite number, got {value!r}.")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}.")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"TrainConfig needs lr > 0, weight_decay >= 0, grad_clip >= 0 (0 = off) and "
                             f"min_lr_ratio in [0, 1]; got lr={self.lr}, weight_decay={self.weight_decay}, "
                             f"grad_clip={self.grad_clip}, min_lr_ratio={self.min_lr_ratio}.")


class History:
    """What happened during training: one record per logged step."""

    def __init__(self, records: list[dict] | None = None) -> None:
        self.records: list[dict] = list(records or [])

    def log(self, **values: Any) -> None:
        """Append one record (step, train_loss, val_loss, val_accuracy, tokens_per_s, wall_s...)."""
        self.records.append(values)

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """Steps and values of one logged quantity (records that lack it are skipped)."""
        rows = [r for r in self.records if r.get(key) is not None]
        if not rows and self.records:
            keys = sorted({k for r in self.records for k in r})
            raise KeyError(f"No record has {key!r}; logged keys: {keys}.")
        return [r["step"] for r in rows], [r[key] for r in rows]

    def last(self, key: str) -> float:
        """The most recent value of a logged quantity."""
        return self.series(key)[1][-1]

    def to_dict(self) -> dict:
        """Plain-dict form for JSON."""
        return {"records": self.records}

    @classmethod
    def from_dict(cls, data: dict) -> "History":
        """Rebuild from `to_dict` output."""
        return cls(data["records"])

    def plot(self, keys: Sequence[str] = ("train_loss", "val_loss"), title: str = "Loss", ax=None):
        """Plot the given quantities against step; returns the figure."""
        from .plots import plot_curves

        return plot_curves({k: self.series(k) for k in keys}, ylabel=", ".join(keys), title=title, ax=ax)

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"History({len(self.records)} records)"


def lr_multiplier(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to ``min_ratio`` at ``total`` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: nn.Module, lr: float, weight_decay: float,
                   betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.AdamW:
    """AdamW over trainable parameters; biases and norm weights get no weight decay."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    if not decay and not no_decay:
        raise ValueError("The model has no trainable parameters: unfreeze something before training.")
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=tuple(betas))


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def evaluate(model: nn.Module, data: Sequence, collate_fn: Callable, device: torch.device | None = None,
             batch_size: int = 128) -> dict[str, float]:
    """Mean loss over a dataset, plus accuracy when the model is a classifier.

    A model whose output has ``logits=None`` and a ``metrics`` dict (e.g. DPO's) gets the
    loss and each metric averaged over batches, weighted by batch size.
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)
    loss_sum, n_loss, correct, n_cls = 0.0, 0, 0, 0
    metric_sums: dict[str, float] = {}
    for batch in loader:
        batch = _to_device(batch, device)
        out = model(**batch)
        if out.logits is None:  # no logits to score: the loss and the model's own metrics, per example
            weight = len(batch["labels"])
            for key, value in (getattr(out, "metrics", None) or {}).items():
                if key == "loss":
                    raise ValueError("A model's metrics must not be named 'loss' (evaluate reports the loss itself).")
                metric_sums[key] = metric_sums.get(key, 0.0) + float(value) * weight
        else:
            weight = int((batch["labels"] != -100).sum()) if out.logits.dim() == 3 else len(batch["labels"])
        loss_sum += float(out.loss) * weight
        n_loss += weight
        if out.logits is not None and out.logits.dim() == 2:  # sequence classification
            correct += int((out.logits.argmax(-1) == batch["labels"]).sum())
            n_cls += len(batch["labels"])
    model.train(was_training)
    result = {"loss": loss_sum / max(1, n_loss)}
    if n_cls:
        result["accuracy"] = correct / n_cls
    result.update({key: total / n_loss for key, total in metric_sums.items()})
    return result


@torch.no_grad()
def predict(model: nn.Module, data: Sequence, collate_fn: Callable, device: torch.device | None = None,
            batch_size: int = 128) -> torch.Tensor:
    """Logits for every example of a dataset, in order (on the CPU)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)
    logits = [model(**_to_device(batch, device)).logits.cpu() for batch in loader]
    model.train(was_training)
    return torch.cat(logits)


def endless_batches(loader: DataLoader) -> Iterator[Any]:
    """Batches from ``loader`` forever: when an epoch ends, a new (reshuffled) one starts."""
    if len(loader) == 0:
        raise ValueError("The data loader yields no batches: the dataset is empty.")
    while True:
        yield from loader


def mixed_precision(device: torch.device, precision: str = "fp32") -> contextlib.AbstractContextManager:
    """The autocast context for a precision on a device ("fp32": a no-op; "bf16": bfloat16 autocast)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        warnings.warn(f"{torch.cuda.get_device_name(device)} has no bf16 support: training in fp32.")
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def count_tokens(batch: dict) -> int:
    """Tokens a batch trains on: real (unpadded) input tokens, else the supervised target tokens."""
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    if "input_ids" in batch:
        return batch["input_ids"].numel()
    return int((batch["labels"] != -100).sum())


def train(model: nn.Module, train_data: Sequence, collate_fn: Callable, config: TrainConfig,
          eval_data: Sequence | None = None, device: torch.device | None = None,
          desc: str = "train", show_progress: bool = True) -> History:
    """Train ``model`` for ``config.steps`` optimizer steps and return its History.

    ``config.precision="bf16"`` runs forward and loss under bfloat16 autocast (mixed precision: weights, gradients
    and optimizer state stay fp32); where the device cannot do bf16 it falls back to fp32 with a warning.
    Modules with a ``regularization_loss()`` (AdapterFusion) add it to the loss that is minimised; the history
    records the task loss.
    """
    if len(train_data) == 0:
        raise ValueError("train_data is empty.")
    device = device or get_device()
    autocast = mixed_precision(device, config.precision)
    model.to(device).train()
    torch.manual_seed(config.seed)  # dropout (and any other random choice in forward) draws from the global RNG
    optimizer = make_optimizer(model, config.lr, config.weight_decay, config.betas)
    warmup = int(config.warmup_ratio * config.steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_multiplier(s, config.steps, warmup, config.min_lr_ratio)
    )
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(train_data, batch_size=config.batch_size, shuffle=True, drop_last=False,
                        collate_fn=collate_fn, generator=generator)
    params = [p for p in model.parameters() if p.requires_grad]
    history, batches = History(), endless_batches(loader)
    start, tokens, running = time.perf_counter(), 0, []
    bar = tqdm(range(1, config.steps + 1), desc=desc, disable=not show_progress, leave=False)
    for step in bar:
        batch = _to_device(next(batches), device)
        with autocast:
            loss = model(**batch).loss
            extra = regularization_loss(model)  # e.g. AdapterFusion's ||I - V||^2 while it trains
        optimizer.zero_grad(set_to_none=True)
        (loss if extra is None else loss + extra).backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        scheduler.step()
        tokens += count_tokens(batch)
        running.append(loss.item())
        if step % config.eval_every == 0 or step == config.steps:
            wall = time.perf_counter() - start
            record = {"step": step, "train_loss": sum(running) / len(running), "lr": scheduler.get_last_lr()[0],
                      "tokens_per_s": tokens / wall, "wall_s": wall}
            running = []
            if eval_data is not None:
                metrics = evaluate(model, eval_data, collate_fn, device, config.eval_batch_size)
                record.update({f"val_{k}": v for k, v in metrics.items()})
            history.log(**record)
            shown = ("train_loss", "val_loss", "val_accuracy")
            bar.set_postfix({k: round(v, 4) for k, v in record.items() if k in shown})
    model.eval()
    return history
