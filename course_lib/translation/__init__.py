"""Everything notebook 12 (the P-Transformer exercise) uses, in one place.

Files, in the order notebook 12 needs them:

=================  ==========================================================================================
notebook 12        file: what it holds
=================  ==========================================================================================
setup              ``runs.py``: ``translation_model_config(sizes, ...)`` / ``translation_train_config(sizes, ...)``
                   turn ``profile.translation`` (a :class:`~course_lib.profiles.TranslationSizes`) into configs
1. The task        ``lexicon.py``: English word lists and the invented Tarvi stems (``TARVI``);
                   ``grammar.py``: sentence structures and how English and Tarvi say them (word order, agreement);
                   ``pairs.py``: ``make_translation_pairs``, ``load_translation`` (disjoint train/validation/test);
                   ``multi30k.py``: ``load_multi30k``, the real English-German data for online users;
                   ``tokenizers.py``: one word tokenizer per language and ``TranslationCollator``
2. Three models    ``model.py``: ``Seq2SeqConfig``, ``Seq2SeqTransformer`` (base, P, P + layer-wise teacher forcing)
3. Base model      ``runs.py``: ``run_translation`` (seed, train with the course's loop, score);
                   ``bleu.py``: greedy ``translate`` and sacrebleu's corpus BLEU-4 (``translate_and_score``)
4.-5. TODOs        ``model.py``: ``encode`` / ``decode`` / ``memory_for_layer``, the reference your decoders match
6. Compare         ``runs.py``: ``TranslationResult.row`` and ``summarize_runs`` (mean ± std over seeds)
=================  ==========================================================================================
"""

from ..profiles import TranslationSizes
from .bleu import bleu_report, corpus_bleu, corpus_bleu_100, translate, translate_and_score
from .grammar import Clause, NounPhrase, Sentence, render_source, render_target
from .lexicon import TARVI, TarviLexicon, build_tarvi_lexicon
from .model import MultiHeadCrossAttention, Seq2SeqConfig, Seq2SeqTransformer
from .multi30k import load_multi30k
from .pairs import SPLITS, load_translation, make_translation_pairs, sample_sentence
from .runs import (ADAM_BETAS, TranslationResult, run_translation, summarize_runs, translation_model_config,
                   translation_train_config)
from .tokenizers import BOS, TranslationCollator, train_translation_tokenizers, train_word_tokenizer

__all__ = [
    # sizes (from course_lib.profiles) and configs
    "TranslationSizes", "translation_model_config", "translation_train_config", "ADAM_BETAS",
    # 1. the task: data, tokenizers, collator
    "TARVI", "TarviLexicon", "build_tarvi_lexicon", "Clause", "NounPhrase", "Sentence", "render_source",
    "render_target", "sample_sentence", "make_translation_pairs", "load_translation", "SPLITS", "load_multi30k",
    "BOS", "train_word_tokenizer", "train_translation_tokenizers", "TranslationCollator",
    # 2. the models
    "MultiHeadCrossAttention", "Seq2SeqConfig", "Seq2SeqTransformer",
    # 3. and 6. training, BLEU-4 and comparison
    "run_translation", "TranslationResult", "summarize_runs",
    "corpus_bleu", "corpus_bleu_100", "bleu_report", "translate", "translate_and_score",
]
