"""Alpaca instruction tuning: all the library code of notebook 10, one file per job.

==================  ===============================================================  ====================
file                what it does                                                     notebook 10 section
==================  ===============================================================  ====================
``records.py``      validate Alpaca records; ``PromptTemplate``, ``ALPACA_TEMPLATE``,  1. The Alpaca format
                    ``COMPACT_TEMPLATE``
``synthetic.py``    the course's generated instruction set (types, held-out groups)  2. Instruction set
``alpaca.py``       real Alpaca data from a JSON/JSONL file or the Hub               2. Instruction set
``vocab.py``        header tokens, growing the embeddings, token statistics          3. and 5.
``tokenize.py``     tokenization with prompt masking; few-shot prompts; fits         3., 4. and 7.
``generate.py``     greedy generation (course GPT and Hugging Face models)           4. Before / 6. After
``scoring.py``      exact match, overall and per group                               4. to 7.
``sft.py``          ``sft_config`` (the profile's recipe), ``run_sft``, scoring runs  5. to 7. and 9.
``collators.py``    padding and packing collators, padding share                     8. Padding vs packing
==================  ===============================================================  ====================

The real model of section 9 (SmolLM2-135M-Instruct) loads with
:func:`course_lib.hub.load_smollm2`; generation runs through the course's one decoding
loop, :func:`course_lib.models.decoding.greedy_extend`.
"""

from .alpaca import ALPACA_HUB_NAME, load_alpaca, load_alpaca_hub, load_alpaca_json
from .collators import PACKING_STRATEGIES, PackingCollator, PaddingCollator, pack_examples, padding_share
from .generate import generate_ids, greedy_generate
from .records import ALPACA_TEMPLATE, COMPACT_TEMPLATE, FIELDS, PromptTemplate, validate_record, validate_records
from .scoring import exact_match, exact_match_by, normalize_answer
from .sft import InstructionScores, SFTResult, run_sft, score_instructions, sft_config
from .synthetic import (GROUPS, INSTRUCTION_TYPES, InstructionType, describe_instruction_types, instruction_types,
                        make_instruction_set)
from .tokenize import few_shot_prompt, fits, response_lengths, tokenize_record, tokenize_records
from .vocab import (add_header_tokens, mean_pairwise_cosine, prepare_for_template, resize_token_embeddings,
                    token_counts, unknown_token_share)

__all__ = [
    # records and templates
    "FIELDS", "validate_record", "validate_records", "PromptTemplate", "ALPACA_TEMPLATE", "COMPACT_TEMPLATE",
    # data
    "GROUPS", "INSTRUCTION_TYPES", "InstructionType", "instruction_types", "describe_instruction_types",
    "make_instruction_set", "ALPACA_HUB_NAME", "load_alpaca", "load_alpaca_hub", "load_alpaca_json",
    # vocabulary and tokenization
    "add_header_tokens", "resize_token_embeddings", "prepare_for_template", "unknown_token_share", "token_counts",
    "mean_pairwise_cosine", "tokenize_record", "tokenize_records", "fits", "response_lengths", "few_shot_prompt",
    # batching
    "PaddingCollator", "PackingCollator", "PACKING_STRATEGIES", "pack_examples", "padding_share",
    # generation and scoring
    "generate_ids", "greedy_generate", "normalize_answer", "exact_match", "exact_match_by",
    # training
    "sft_config", "run_sft", "score_instructions", "InstructionScores", "SFTResult",
]
