"""Pretrained bases the course trains itself, cached so later notebooks start in seconds.

``load_pretrained("gpt", profile)`` or ``load_pretrained("encoder", profile)`` returns a model
pretrained on the synthetic corpus for that profile's sizes: next-token
prediction for the GPT, masked LM for the encoder. The first call trains it
(deterministically) and saves weights, config, tokenizer and loss history under
``$COURSE_CACHE``; every later call just loads them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from .checkpoints import atomic_write_dir, file_lock
from .data.collate import CausalLMCollator, MLMCollator
from .data.corpus import make_corpus
from .data.tokenizer import load_tokenizer, save_tokenizer, train_tokenizer
from .models.encoder import EncoderConfig, EncoderForMaskedLM, EncoderForSequenceClassification
from .models.gpt import GPT, GPTConfig
from .profiles import Profile, get_device, get_profile, seed_everything
from .train import History, TrainConfig, evaluate, train

CACHE_ENV = "COURSE_CACHE"
CACHE_VERSION = 2  # bump when data, models or recipes change so stale caches are not reused (2: deterministic BPE)
BASE_NAMES = ("gpt", "encoder")
CORPUS_SEED = 0
VAL_FRACTION = 0.05


def cache_dir() -> Path:
    """Root of the course cache: $COURSE_CACHE, else the user's cache directory."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("peft-from-scratch"))


def _key(*parts: object) -> str:
    """Short stable hash of the things a cached artifact depends on."""
    blob = json.dumps([CACHE_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def corpus_splits(profile: Profile) -> tuple[list[str], list[str]]:
    """The profile's pretraining corpus split into (train, validation) sentences."""
    corpus = make_corpus(profile.corpus_sentences, seed=CORPUS_SEED)
    n_val = max(1, int(len(corpus) * VAL_FRACTION))
    return corpus[n_val:], corpus[:n_val]


def course_tokenizer(profile: Profile):
    """The BPE tokenizer trained on the profile's corpus (trained once, then cached)."""
    path = cache_dir() / f"tokenizer-{profile.name}-{_key(profile.corpus_sentences, profile.vocab_size)}"
    with file_lock(path.with_name(path.name + ".lock")):  # concurrent processes: one trains, the others reuse
        if (path / "tokenizer.json").is_file():
            return load_tokenizer(path)
        train_texts, _ = corpus_splits(profile)
        tokenizer = train_tokenizer(train_texts, vocab_size=profile.vocab_size)
        atomic_write_dir(path, lambda tmp: save_tokenizer(tokenizer, tmp))
    return tokenizer


def _check_name(name: str) -> None:
    if name not in BASE_NAMES:
        raise ValueError(f"Unknown base model {name!r}; available: {', '.join(BASE_NAMES)}.")


def model_config(name: str, profile: Profile, tokenizer) -> GPTConfig | EncoderConfig:
    """The backbone config for a base name at the profile's size."""
    _check_name(name)
    shape = dict(vocab_size=len(tokenizer), max_len=profile.max_len, d_model=profile.d_model,
                 n_layers=profile.n_layers, n_heads=profile.n_heads, d_ff=profile.d_ff,
                 pad_token_id=tokenizer.pad_token_id)
    if name == "gpt":
        return GPTConfig(**shape, eos_token_id=tokenizer.eos_token_id)
    return EncoderConfig(**shape)


def build_model(name: str, config: GPTConfig | EncoderConfig) -> nn.Module:
    """A randomly initialised GPT or masked-LM encoder for a config."""
    _check_name(name)
    return GPT(config) if name == "gpt" else EncoderForMaskedLM(config)


def pretrain_config(profile: Profile) -> TrainConfig:
    """The pretraining recipe for a profile."""
    return TrainConfig(steps=profile.pretrain_steps, batch_size=profile.pretrain_batch, lr=profile.pretrain_lr,
                       warmup_ratio=0.05, eval_every=max(1, profile.pretrain_steps // 10), seed=0,
                       precision=profile.precision)


@dataclass
class PretrainedBase:
    """A pretrained base model with its tokenizer, loss history and cache location."""

    name: str
    model: nn.Module
    tokenizer: object
    history: History
    path: Path
    from_cache: bool


def load_pretrained(name: str, profile: Profile | str, force: bool = False,
                    device: torch.device | None = None, show_progress: bool = True) -> PretrainedBase:
    """Return the pretrained base ``name`` ('gpt' or 'encoder') of a profile (or profile name), training and caching
    it on first use."""
    _check_name(name)
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    tokenizer = course_tokenizer(profile)
    config = model_config(name, profile, tokenizer)
    recipe = pretrain_config(profile)
    path = cache_dir() / f"{name}-{profile.name}-{_key(name, profile.corpus_sentences, config.to_dict(), vars(recipe))}"
    with file_lock(path.with_name(path.name + ".lock")):  # concurrent processes: one pretrains, the others reuse
        return _load_or_pretrain(name, profile, tokenizer, config, recipe, path, force, device, show_progress)


def _load_or_pretrain(name: str, profile: Profile, tokenizer: Any, config: GPTConfig | EncoderConfig,
                      recipe: TrainConfig, path: Path, force: bool, device: torch.device | None,
                      show_progress: bool) -> PretrainedBase:
    """The cached base at ``path``, or (missing or ``force``) pretrain it and write the cache entry atomically."""
    model = build_model(name, config)
    if (path / "model.safetensors").is_file() and not force:
        load_model(model, path / "model.safetensors")
        history = History.from_dict(json.loads((path / "history.json").read_text()))
        return PretrainedBase(name, model.eval(), tokenizer, history, path, from_cache=True)

    seed_everything(0)
    model = build_model(name, config)  # re-created after seeding so the init is reproducible
    train_texts, val_texts = corpus_splits(profile)
    collate = (CausalLMCollator(tokenizer, profile.max_len) if name == "gpt"
               else MLMCollator(tokenizer, profile.max_len, seed=0))
    history = train(model, train_texts, collate, recipe, eval_data=val_texts, device=device or get_device(),
                    desc=f"pretrain {name}", show_progress=show_progress)
    model.cpu().eval()

    def write(tmp: Path) -> None:
        save_model(model, tmp / "model.safetensors")
        (tmp / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
        (tmp / "history.json").write_text(json.dumps(history.to_dict()))
        save_tokenizer(tokenizer, tmp / "tokenizer")

    atomic_write_dir(path, write)
    return PretrainedBase(name, model, tokenizer, history, path, from_cache=False)


def pretraining_loss(base: PretrainedBase, encoder: nn.Module | None = None, *, profile: Profile,
                     device: torch.device | None = None) -> float:
    """The base's pretraining loss (MLM or next-token) on the held-out corpus, optionally with another encoder.

    Passing a fine-tuned ``encoder`` measures forgetting: how much worse the
    original MLM head predicts masked words once the encoder has moved. Masks are
    seeded, so before/after numbers compare the same corrupted sentences.
    """
    model = copy.deepcopy(base.model)
    if encoder is not None:
        if base.name != "encoder":
            raise ValueError("Only the 'encoder' base can take a replacement encoder.")
        model.encoder.load_state_dict(encoder.state_dict())  # the tied MLM decoder follows the embeddings
    _, val_texts = corpus_splits(profile)
    collate = (CausalLMCollator(base.tokenizer, profile.max_len) if base.name == "gpt"
               else MLMCollator(base.tokenizer, profile.max_len, seed=1))
    return evaluate(model.to(device or get_device()), val_texts, collate)["loss"]


def encoder_classifier(num_labels: int, base: PretrainedBase | None = None, profile: Profile | None = None,
                       seed: int = 0) -> EncoderForSequenceClassification:
    """A sequence classifier on a copy of the pretrained encoder, or randomly initialised (the profile's shape)."""
    torch.manual_seed(seed)  # the new head (and a random encoder) start the same way every time
    if base is not None:
        if base.name != "encoder":
            raise ValueError(f"encoder_classifier needs the 'encoder' base, got {base.name!r}.")
        encoder = copy.deepcopy(base.model.encoder)
        return EncoderForSequenceClassification(encoder.config, num_labels, encoder=encoder)
    if profile is None:
        raise ValueError("A randomly initialised classifier (base=None) needs profile=... for its shape and "
                         "tokenizer; pass a pretrained base to start from pretrained weights.")
    config = model_config("encoder", profile, course_tokenizer(profile))
    return EncoderForSequenceClassification(config, num_labels)
