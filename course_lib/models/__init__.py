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
from .gpt import GPT, GPTBlock, GPTConfig
from .outputs import ModelOutput
from .seq2seq import MultiHeadCrossAttention, Seq2SeqConfig, Seq2SeqTransformer

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
    "MultiHeadCrossAttention",
    "Seq2SeqConfig",
    "Seq2SeqTransformer",
]
