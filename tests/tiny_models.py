"""Tiny models and helpers shared by the PEFT tests (adapters, fusion, LoRA, freezing)."""

import pytest
import torch

from course_lib.models import GPT, EncoderConfig, EncoderForSequenceClassification, GPTConfig
from course_lib.train import TrainConfig, train


def tiny_classifier(seed=0, d_model=32, n_layers=3):
    torch.manual_seed(seed)
    return EncoderForSequenceClassification(EncoderConfig(vocab_size=120, max_len=32, d_model=d_model,
                                                          n_layers=n_layers, n_heads=2, d_ff=64), num_labels=2).eval()


def tiny_gpt(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=120, max_len=32, d_model=32, n_layers=2, n_heads=2, d_ff=64)).eval()


def tiny_bert(seed=0):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                                                    num_attention_heads=2, intermediate_size=32)).eval()


def ids(vocab=120, seed=1):
    return torch.randint(1, vocab, (3, 10), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def logits(model, vocab=120):
    return model(ids(vocab)).logits


def train_steps(model, data, steps=4):
    """A few optimizer steps on the shared ``data`` fixture; the model is left in eval mode."""
    rows, collate = data
    train(model, rows, collate, TrainConfig(steps=steps, batch_size=8, lr=1e-2, eval_every=steps),
          device=torch.device("cpu"), show_progress=False)


def _peft_version() -> tuple[int, int]:
    from importlib.metadata import version

    return tuple(int(part) for part in version("peft").split(".")[:2])


# The course's merging and stacked-DoRA arithmetic is checked against the peft release it matches. The declared
# floor (peft 0.14, enough for the file formats) combines adapters differently in add_weighted_adapter and stacks
# DoRA adapters differently, so these comparisons skip there instead of testing an older definition.
REFERENCE_PEFT = (0, 21)
requires_reference_peft = pytest.mark.skipif(
    _peft_version() < REFERENCE_PEFT,
    reason=f"compares with peft >= {'.'.join(map(str, REFERENCE_PEFT))}'s definition (installed: an older peft)")
