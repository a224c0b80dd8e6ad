"""Preference tuning with DPO and LoRA: all the library code of the preference notebook, one file per job.

==================  ==========================================================================================
file                what it does
==================  ==========================================================================================
``records.py``      check ``{prompt, chosen, rejected}`` records; load them from JSON / JSON Lines or the Hub
                    (the ``Intel/orca_dpo_pairs`` schema too)
``synthetic.py``    preference pairs from the course's instruction set: the right answer against another
                    answer of the same instruction type
``tokenize.py``     tokenized pairs with the prompt masked; ``PreferenceCollator`` (chosen rows, then rejected
                    rows, one padded batch)
``dpo.py``          sequence log-probabilities, the DPO loss, ``DPOModel`` (reference = the policy with its LoRA
                    switched off), held-out preference metrics, a sampled KL to the reference
``runs.py``         one DPO run as the notebook makes it: ``lora_policy`` on the SFT model, ``run_dpo`` -> ``DPORun``
==================  ==========================================================================================

Training reuses :func:`course_lib.train.train`: a :class:`DPOModel` returns its loss and,
instead of logits, a ``metrics`` dict (margin, accuracy, rewards) that
:func:`course_lib.train.evaluate` averages and the History records as ``val_margin`` and so on.
"""

from .dpo import (METRIC_NAMES, DPOModel, DPOOutput, DPOTerms, check_beta, dpo_loss, preference_metrics, sampled_kl,
                  sequence_logprobs)
from .runs import GPT_PROJECTIONS, DPORun, lora_policy, run_dpo
from .records import (PREFERENCE_FIELDS, PREFERENCE_HUB_NAME, load_preference_hub, load_preference_json,
                      validate_preference_record, validate_preference_records)
from .synthetic import make_preference_pairs
from .tokenize import PAIR_KEYS, PreferenceCollator, tokenize_pair, tokenize_pairs

__all__ = [
    # records and data
    "PREFERENCE_FIELDS", "PREFERENCE_HUB_NAME", "validate_preference_record", "validate_preference_records",
    "load_preference_json", "load_preference_hub", "make_preference_pairs",
    # tokenization and batching
    "PAIR_KEYS", "tokenize_pair", "tokenize_pairs", "PreferenceCollator",
    # DPO
    "sequence_logprobs", "check_beta", "dpo_loss", "DPOTerms", "DPOOutput", "DPOModel", "METRIC_NAMES",
    "preference_metrics", "sampled_kl",
    # runs
    "GPT_PROJECTIONS", "lora_policy", "DPORun", "run_dpo",
]
