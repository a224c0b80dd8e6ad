"""Greedy generation for the course GPT and Hugging Face causal LMs: max new tokens, stop at EOS.

Prompts of equal length are batched together, so no prompt is ever padded: the
course GPT's learned positions and a Hugging Face model's rotary positions both see
exactly the positions the prompt had alone. Hugging Face models reuse their key/value
cache between steps; the course GPT recomputes its (short) context each step and
keeps only its last ``max_len`` tokens.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm


def _is_hf(model: nn.Module) -> bool:
    """True for a transformers PreTrainedModel (uses the KV cache), False for the course's models."""
    try:
        from transformers import PreTrainedModel
    except ImportError:  # pragma: no cover - transformers is a course dependency
        return False
    return isinstance(model, PreTrainedModel) or isinstance(getattr(model, "base_model", None), PreTrainedModel)


def _context_limit(model: nn.Module) -> int | None:
    """The course GPT's ``config.max_len`` (positions it knows), None for models without one."""
    return getattr(getattr(model, "config", None), "max_len", None)


@torch.no_grad()
def generate_ids(model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int = 16,
                 eos_token_id: int | None = None, batch_size: int = 32, device: torch.device | None = None,
                 show_progress: bool = False) -> list[list[int]]:
    """Greedy continuation ids for each prompt (a list of token ids), in the prompts' order.

    A continuation stops right after the EOS token (which it includes) or after
    ``max_new_tokens`` tokens. ``eos_token_id=None`` means: never stop early.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    prompts = [list(p) for p in prompts]
    for i, p in enumerate(prompts):
        if not p:
            raise ValueError(f"prompt {i} is empty; give at least one token (e.g. a BOS or the template's first token).")
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    hf, limit = _is_hf(model), _context_limit(model)
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        by_length[len(p)].append(i)
    chunks = [idx[s:s + batch_size] for idx in by_length.values() for s in range(0, len(idx), batch_size)]
    results: list[list[int]] = [[] for _ in prompts]
    for chunk in tqdm(chunks, desc="generate", disable=not show_progress, leave=False):
        ids = torch.tensor([prompts[i] for i in chunk], dtype=torch.long, device=device)
        new = torch.empty(len(chunk), 0, dtype=torch.long, device=device)
        done = torch.zeros(len(chunk), dtype=torch.bool, device=device)
        past, step_input = None, ids
        for _ in range(max_new_tokens):
            if hf:
                out = model(input_ids=step_input, past_key_values=past, use_cache=True)
                past = out.past_key_values
            else:
                context = torch.cat([ids, new], dim=1)
                out = model(input_ids=context[:, -limit:] if limit else context)
            next_token = out.logits[:, -1, :].argmax(dim=-1)
            new = torch.cat([new, next_token[:, None]], dim=1)
            step_input = next_token[:, None]
            if eos_token_id is not None:
                done = done | (next_token == eos_token_id)
                if bool(done.all()):
                    break
        for row, i in enumerate(chunk):
            tokens = new[row].tolist()
            if eos_token_id is not None and eos_token_id in tokens:
                tokens = tokens[:tokens.index(eos_token_id) + 1]
            results[i] = tokens
    model.train(was_training)
    return results


def greedy_generate(model: nn.Module, tokenizer, prompts: Sequence[str], max_new_tokens: int = 16,
                    batch_size: int = 32, device: torch.device | None = None, show_progress: bool = False,
                    stop_at_eos: bool = True) -> list[str]:
    """Greedy continuations of text prompts, decoded without special tokens (the EOS is dropped)."""
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    eos = tokenizer.eos_token_id if stop_at_eos else None
    outputs = generate_ids(model, encoded, max_new_tokens, eos, batch_size, device, show_progress)
    return [tokenizer.decode(o, skip_special_tokens=True).strip() for o in outputs]
