"""From-scratch transformer models used throughout the course."""

from .attention import FeedForward, MultiHeadSelfAttention
from .encoder import (
    ClassificationHead,
    Encoder,
    EncoderConfig,
    EncoderEmbeddings,
    EncoderForMaskedLM,
    EncoderForSequenceClassification,
    EncoderLayer,
    MLMHead,
)
from .common import init_weights
from .decoding import greedy_extend
from .gpt import GPT, GPTBlock, GPTConfig
from .outputs import ModelOutput

__all__ = [
    "ModelOutput",
    "MultiHeadSelfAttention",
    "FeedForward",
    "GPTConfig",
    "GPTBlock",
    "GPT",
    "EncoderConfig",
    "EncoderEmbeddings",
    "EncoderLayer",
    "Encoder",
    "MLMHead",
    "EncoderForMaskedLM",
    "ClassificationHead",
    "EncoderForSequenceClassification",
    "init_weights",
    "greedy_extend",
]
