"""What a real-track method costs and forgets beyond accuracy: measured peak training memory and embedding drift.

all-MiniLM-L6-v2 was pretrained as a *sentence encoder*: its mean-pooled, normalised token states place sentences
of similar meaning near each other. Fine-tuning for sentiment can reshape that space. We measure the forgetting of
that skill on sentences of another domain (NYT editorials) that no method trains on:

- **neighbour agreement@k**: for each sentence, the share of its k nearest neighbours under the pretrained
  encoder that are still among its k nearest neighbours after fine-tuning (1 = the geometry is unchanged);
- **cosine to base**: the mean cosine between a sentence's embedding before and after fine-tuning.

A method that leaves the encoder's weights untouched (head only; a LoRA adapter switched off) scores exactly 1 on
both. Measurements of trained models are cached next to the runs (``$COURSE_CACHE/runs/<key>.<name>.json``).
"""

from __future__ import annotations

import json
import random
from typing import Any, Callable, Optional

import torch
from torch import nn

from .benchmark import MethodSpec, RealTask, load_real_model, real_splits, run_key, runs_dir, train_real
from .checkpoints import file_lock, write_json_atomic
from .data.collate import ClassificationCollator
from .data.vader import read_ratings
from .memory import PeakMemory
from .profiles import Profile, get_device
from .train import TrainConfig, train

PROBE_DOMAIN = "nyt"


def probe_texts(n: int, domain: str = PROBE_DOMAIN, seed: int = 0) -> list[str]:
    """A seeded sample of ``n`` sentences of ``domain`` (default: NYT editorials, which no method trains on)."""
    texts = read_ratings(domain).texts
    if not isinstance(n, int) or not 1 <= n <= len(texts):
        raise ValueError(f"n must be an int from 1 to {len(texts)} ({domain} sentences), got {n!r}.")
    return random.Random(seed).sample(texts, n)


@torch.no_grad()
def sentence_embeddings(model: nn.Module, tokenizer: Any, texts: list[str], max_len: int, batch_size: int = 64,
                        device: Optional[torch.device] = None) -> torch.Tensor:
    """Mean-pooled, L2-normalised final token states of a Hugging Face encoder (sentence-transformers' recipe)."""
    device = device or get_device()
    encoder = model.base_model.to(device).eval()
    rows = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_len,
                          return_tensors="pt").to(device)
        states = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1)
        rows.append(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu())
    return torch.cat(rows)


def neighbour_agreement(before: torch.Tensor, after: torch.Tensor, k: int = 10) -> float:
    """Mean share of each row's k nearest neighbours (cosine, self excluded) kept from ``before`` to ``after``."""
    if before.shape != after.shape or before.dim() != 2:
        raise ValueError(f"need two (n, d) embedding matrices of one shape, got {tuple(before.shape)} and "
                         f"{tuple(after.shape)}")
    if not isinstance(k, int) or not 1 <= k < before.shape[0]:
        raise ValueError(f"k must be an int from 1 to {before.shape[0] - 1}, got {k!r}.")

    def neighbours(emb: torch.Tensor) -> torch.Tensor:
        sims = emb @ emb.T
        sims.fill_diagonal_(-float("inf"))
        return sims.topk(k, dim=1).indices

    old, new = neighbours(before), neighbours(after)
    kept = [len(set(o.tolist()) & set(n.tolist())) for o, n in zip(old, new)]
    return sum(kept) / (k * len(kept))


def embedding_drift(before: torch.Tensor, after: torch.Tensor, k: int = 10) -> dict[str, float]:
    """Forgetting of the sentence-encoder skill: neighbour agreement@k and the mean cosine to the base embeddings."""
    return {f"neighbour agreement@{k}": neighbour_agreement(before, after, k),
            "cosine to base": float((before * after).sum(1).mean())}


def base_embeddings(texts: list[str], max_len: int, device: Optional[torch.device] = None) -> torch.Tensor:
    """The pretrained MiniLM's sentence embeddings of ``texts`` (the "before" of every drift measurement)."""
    model, tokenizer = load_real_model(2, ["negative", "positive"], seed=0)
    return sentence_embeddings(model, tokenizer, texts, max_len, device=device)


def cached_measure(spec: MethodSpec, lr: float, seed: int, profile: Profile, name: str,
                   measure: Callable[[nn.Module, Any], dict], task: RealTask = RealTask(), splits: Any = None,
                   device: Optional[torch.device] = None, show_progress: bool = True) -> dict:
    """``measure(trained model, tokenizer)`` of one run, cached as ``<run key>.<name>.json`` (trains when missing)."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"measure name must be letters, digits and '_', got {name!r}.")
    device = device or get_device()
    path = runs_dir() / f"{run_key(spec, lr, seed, profile, task, device)}.{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_suffix(".lock")):
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except ValueError:
                pass  # a damaged file is measured again
        _, model = train_real(spec, lr, seed, profile, task, splits, device, show_progress)
        _, tokenizer = load_real_model(2, ["negative", "positive"], seed=0)
        values = measure(model, tokenizer)
        write_json_atomic(path, values)
        return values


def training_peak(spec: MethodSpec, profile: Profile, task: RealTask = RealTask(), splits: Any = None,
                  steps: int = 3, device: Optional[torch.device] = None) -> tuple[Optional[int], str]:
    """(peak bytes added, how measured) by ``steps`` training steps of the real-track batch, model already loaded."""
    device = device or get_device()
    splits = splits if splits is not None else real_splits(profile, task)
    sizes = profile.real
    label_names = splits["train"].features["label"].names
    model, tokenizer = load_real_model(len(label_names), label_names, seed=0)
    model = (spec.prepare()(model) or model).to(device)
    data = splits["train"].select(range(min(len(splits["train"]), steps * sizes.batch_size)))
    config = TrainConfig(steps=steps, batch_size=sizes.batch_size, lr=1e-4, eval_every=steps, seed=0,
                         precision=profile.precision)
    collate = ClassificationCollator(tokenizer, max_len=sizes.max_len)
    with PeakMemory(device) as memory:
        train(model, data, collate, config, device=device, show_progress=False)
    return memory.peak_bytes, memory.method
