"""The course's one decoding loop: extend token ids one step at a time, greedily or by sampling.

Every generator in the course (``GPT.generate``, prompt tuning's generate, the
seq2seq greedy decoder, instruction tuning's ``generate_ids``) is this loop with a
different ``next_logits``: a function from the current ids [B, T] to the logits of
the next token [B, V]. This module imports only torch.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

NextLogits = Callable[[Tensor], Tensor]


def check_sampling(max_new_tokens: int, temperature: float = 0.0, top_k: Optional[int] = None) -> None:
    """Raise ValueError for a negative token budget or temperature, or a top_k below 1."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be None or an integer >= 1, got {top_k}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")


def pick_next(logits: Tensor, temperature: float = 0.0, top_k: Optional[int] = None,
              generator: Optional[torch.Generator] = None) -> Tensor:
    """The next token [B] from logits [B, V]: arg-max at temperature 0, else a top-k sample."""
    if temperature == 0.0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:  # keep the k largest logits, drop the rest
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def greedy_extend(next_logits: NextLogits, input_ids: Tensor, max_new_tokens: int,
                  eos_token_id: Optional[int] = None, pad_token_id: Optional[int] = None,
                  context_limit: Optional[int] = None, temperature: float = 0.0, top_k: Optional[int] = None,
                  generator: Optional[torch.Generator] = None) -> Tensor:
    """``input_ids`` [B, T] plus up to ``max_new_tokens`` tokens picked from ``next_logits(context)``.

    * ``context_limit``: ``next_logits`` sees only the last ``context_limit`` ids (None: all);
    * ``eos_token_id``: a row is finished once it emits EOS; the loop stops when all rows are
      (None: never stop early). After its EOS a row emits ``pad_token_id`` if one is given,
      otherwise whatever it picks;
    * ``temperature`` 0 (the default) is greedy decoding; above 0, sample (optionally top-k).
    """
    check_sampling(max_new_tokens, temperature, top_k)
    finished = torch.zeros(input_ids.size(0), dtype=torch.bool, device=input_ids.device)
    for _ in range(max_new_tokens):
        context = input_ids[:, -context_limit:] if context_limit else input_ids
        next_token = pick_next(next_logits(context), temperature, top_k, generator)
        if eos_token_id is not None:
            if pad_token_id is not None:  # rows that already finished keep emitting padding
                next_token = next_token.masked_fill(finished, pad_token_id)
            finished = finished | (next_token == eos_token_id)
        input_ids = torch.cat([input_ids, next_token[:, None]], dim=1)
        if eos_token_id is not None and bool(finished.all()):
            break
    return input_ids
