"""Train, evaluate and report the translation models of the P-Transformer exercise.

``course_lib.train.train`` is written for batches with ``input_ids``; a translation batch has
``src_ids`` and ``tgt_input_ids`` instead, so this module has its own small loop. It reuses
the course's optimizer (AdamW, no decay on biases and norms), its warmup + cosine schedule,
``evaluate`` (token-weighted mean loss) and ``History``.

Determinism: the data order comes from a generator seeded with ``config.seed`` and the global
torch RNG (dropout, layer-wise teacher forcing) is seeded with it when training starts;
:func:`run_translation` also seeds the weight initialisation, so one seed gives one run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .bleu import translate_and_score
from .params import count_parameters
from .profiles import get_device, seed_everything
from .train import History, TrainConfig, endless_batches, evaluate, lr_multiplier, make_optimizer

if TYPE_CHECKING:
    import pandas

ADAM_BETAS = (0.9, 0.98)  # the Transformer paper's (and the PyTorch translation tutorial's) AdamW betas


def translation_train_config(sizes: Any, seed: int = 0, **overrides: Any) -> TrainConfig:
    """The TrainConfig of a :class:`~course_lib.data.translation.TranslationSizes` (plus a seed and overrides)."""
    kwargs = dict(sizes.train_kwargs(), seed=seed)
    kwargs.update(overrides)
    return TrainConfig(**kwargs)


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def train_translation_model(model: nn.Module, train_data: Sequence, collate_fn: Callable, config: TrainConfig,
                            eval_data: Optional[Sequence] = None, device: Optional[torch.device] = None,
                            desc: str = "train", show_progress: bool = True) -> History:
    """Train a seq2seq model for ``config.steps`` steps; log train loss (and validation loss) every ``eval_every``."""
    if len(train_data) == 0:
        raise ValueError("train_data is empty: pass at least one (src, tgt) pair.")
    device = device or get_device()
    model.to(device).train()
    torch.manual_seed(config.seed)  # dropout and layer-wise teacher forcing draw from the global RNG
    optimizer = make_optimizer(model, config.lr, config.weight_decay)
    for group in optimizer.param_groups:
        group["betas"] = ADAM_BETAS
    warmup = int(config.warmup_ratio * config.steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_multiplier(s, config.steps, warmup, config.min_lr_ratio))
    loader = DataLoader(train_data, batch_size=config.batch_size, shuffle=True, collate_fn=collate_fn,
                        generator=torch.Generator().manual_seed(config.seed))
    params = [p for p in model.parameters() if p.requires_grad]
    history, batches = History(), endless_batches(loader)
    start, tokens, running = time.perf_counter(), 0, []
    bar = tqdm(range(1, config.steps + 1), desc=desc, disable=not show_progress, leave=False)
    for step in bar:
        batch = _to_device(next(batches), device)
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        scheduler.step()
        tokens += int((batch["labels"] != -100).sum())
        running.append(loss.item())
        if step % config.eval_every == 0 or step == config.steps:
            wall = time.perf_counter() - start
            record = {"step": step, "train_loss": sum(running) / len(running), "lr": scheduler.get_last_lr()[0],
                      "tokens_per_s": tokens / wall, "wall_s": wall}
            running = []
            if eval_data is not None:
                record["val_loss"] = evaluate(model, eval_data, collate_fn, device, config.eval_batch_size)["loss"]
            history.log(**record)
            bar.set_postfix({k: round(v, 3) for k, v in record.items() if k in ("train_loss", "val_loss")})
    model.eval()
    return history


@dataclass
class TranslationResult:
    """One trained translation model: losses, BLEU-4, size, time and its training history."""

    name: str
    seed: int
    params: int
    steps: int
    train_seconds: float
    val_loss: float
    test_loss: float
    bleu: float  # corpus BLEU-4 on the test set, 0-1 (the seed's scale)
    bleu_100: float  # the same on sacrebleu's 0-100 scale
    precisions: list[float]
    brevity_penalty: float
    history: History
    examples: list[tuple[str, str, str]] = field(default_factory=list)  # (source, reference, hypothesis)
    model: Optional[nn.Module] = field(default=None, repr=False)

    def row(self) -> dict:
        """The result as a flat dict for a results table."""
        return {"model": self.name, "seed": self.seed, "params": self.params, "steps": self.steps,
                "train s": round(self.train_seconds, 1), "val loss": round(self.val_loss, 4),
                "test loss": round(self.test_loss, 4), "BLEU-4": round(self.bleu, 4),
                "sacreBLEU": round(self.bleu_100, 2)}


def run_translation(model_config: Any, data: Any, src_tokenizer: Any, tgt_tokenizer: Any, config: TrainConfig,
                    name: str = "model", build: Optional[Callable[[Any], nn.Module]] = None,
                    decode_max_len: Optional[int] = None, device: Optional[torch.device] = None,
                    show_progress: bool = True, keep_model: bool = True) -> TranslationResult:
    """Build a model under ``config.seed``, train it on ``data['train']``, report losses and test BLEU-4.

    ``build(model_config)`` makes the model (default: :class:`~course_lib.models.Seq2SeqTransformer`);
    the same seed gives the same initial weights to every variant whose modules are the same.
    """
    from .data.translation import TranslationCollator
    from .models.seq2seq import Seq2SeqTransformer

    missing = {"train", "validation", "test"} - set(data)
    if missing:
        raise ValueError(f"data is missing {sorted(missing)}; it needs train, validation and test splits.")
    device = device or get_device()
    seed_everything(config.seed)
    model = (build or Seq2SeqTransformer)(model_config).to(device)
    collator = TranslationCollator(src_tokenizer, tgt_tokenizer, max_len=model_config.max_len)
    start = time.perf_counter()
    history = train_translation_model(model, data["train"], collator, config, eval_data=data["validation"],
                                      device=device, desc=f"{name} (seed {config.seed})", show_progress=show_progress)
    seconds = time.perf_counter() - start
    test_loss = evaluate(model, data["test"], collator, device, config.eval_batch_size)["loss"]
    report = translate_and_score(model, data["test"], src_tokenizer, tgt_tokenizer, batch_size=config.eval_batch_size,
                                 max_len=decode_max_len, device=device)
    return TranslationResult(
        name=name, seed=config.seed, params=count_parameters(model).total, steps=config.steps, train_seconds=seconds,
        val_loss=history.last("val_loss"), test_loss=test_loss, bleu=report["bleu"], bleu_100=report["bleu_100"],
        precisions=report["precisions"], brevity_penalty=report["brevity_penalty"], history=history,
        examples=report["examples"], model=model if keep_model else None)


SUMMARY_METRICS = {"val loss": 3, "test loss": 3, "BLEU-4": 3, "sacreBLEU": 1, "train s": 0}  # metric -> decimals


def summarize_runs(results: Sequence[TranslationResult]) -> "pandas.DataFrame":
    """One row per model (in first-seen order): "mean ± std" over its seeds of losses, BLEU-4 and train seconds.

    The std is the sample standard deviation (ddof=1); with one seed only the mean is shown.
    """
    import pandas as pd

    if not results:
        raise ValueError("summarize_runs needs at least one TranslationResult.")
    rows = pd.DataFrame([r.row() for r in results])
    table = {}
    for name, group in rows.groupby("model", sort=False):
        cells = {"seeds": len(group), "params": int(group["params"].iloc[0])}
        for metric, digits in SUMMARY_METRICS.items():
            mean, std = group[metric].mean(), group[metric].std(ddof=1)
            cells[metric] = f"{mean:.{digits}f}" if len(group) == 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"
        table[name] = cells
    return pd.DataFrame(table).T.rename_axis("model")
