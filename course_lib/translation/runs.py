"""Configure, train, score and summarise the translation models of the P-Transformer exercise.

Training is the course's one loop, :func:`course_lib.train.train`, with the Transformer
paper's AdamW betas (0.9, 0.98). Sizes come from the profile (``profile.translation``,
a :class:`~course_lib.profiles.TranslationSizes`) and are passed in explicitly.

Determinism: ``train`` draws the data order from a generator seeded with ``config.seed``
and seeds the global torch RNG (dropout, layer-wise teacher forcing) with it;
:func:`run_translation` also seeds the weight initialisation, so one seed gives one run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import torch
from torch import nn

from ..params import count_parameters
from ..profiles import TranslationSizes, get_device, seed_everything
from ..train import History, TrainConfig, evaluate, train
from .bleu import translate_and_score
from .model import Seq2SeqConfig, Seq2SeqTransformer
from .tokenizers import TranslationCollator

if TYPE_CHECKING:
    import pandas

ADAM_BETAS = (0.9, 0.98)  # the Transformer paper's (and the PyTorch translation tutorial's) AdamW betas
SPLITS_NEEDED = ("train", "validation", "test")


def translation_model_config(sizes: TranslationSizes, src_tokenizer: Any, tgt_tokenizer: Any,
                             **overrides: Any) -> Seq2SeqConfig:
    """A Seq2SeqConfig from the sizes and the two tokenizers' vocabularies and special ids (plus overrides)."""
    kwargs = dict(src_vocab_size=len(src_tokenizer), tgt_vocab_size=len(tgt_tokenizer),
                  pad_token_id=tgt_tokenizer.pad_token_id, bos_token_id=tgt_tokenizer.bos_token_id,
                  eos_token_id=tgt_tokenizer.eos_token_id, **sizes.model_kwargs())
    kwargs.update(overrides)
    return Seq2SeqConfig(**kwargs)


def translation_train_config(sizes: TranslationSizes, seed: int = 0, precision: str = "fp32",
                             **overrides: Any) -> TrainConfig:
    """The TrainConfig of the sizes' budget with betas (0.9, 0.98), a seed and a precision (plus overrides)."""
    kwargs = dict(sizes.train_kwargs(), seed=seed, precision=precision, betas=ADAM_BETAS)
    kwargs.update(overrides)
    return TrainConfig(**kwargs)


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


def run_translation(model_config: Seq2SeqConfig, data: Any, src_tokenizer: Any, tgt_tokenizer: Any,
                    config: TrainConfig, name: str = "model", build: Optional[Callable[[Any], nn.Module]] = None,
                    decode_max_len: Optional[int] = None, device: Optional[torch.device] = None,
                    show_progress: bool = True, keep_model: bool = True) -> TranslationResult:
    """Build a model under ``config.seed``, train it on ``data['train']``, report losses and test BLEU-4.

    ``build(model_config)`` makes the model (default: :class:`Seq2SeqTransformer`);
    the same seed gives the same initial weights to every variant whose modules are the same.
    """
    missing = set(SPLITS_NEEDED) - set(data)
    if missing:
        raise ValueError(f"data is missing {sorted(missing)}; it needs train, validation and test splits.")
    device = device or get_device()
    seed_everything(config.seed)
    model = (build or Seq2SeqTransformer)(model_config).to(device)
    collator = TranslationCollator(src_tokenizer, tgt_tokenizer, max_len=model_config.max_len)
    start = time.perf_counter()
    history = train(model, data["train"], collator, config, eval_data=data["validation"], device=device,
                    desc=f"{name} (seed {config.seed})", show_progress=show_progress)
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
