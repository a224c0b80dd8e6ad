"""Save and load prompt tuning and prefix tuning in Hugging Face peft's format.

``adapter_config.json`` plus ``prompt_embeddings`` in ``adapter_model.safetensors`` (peft's names and
tensor layout), so a prompt trained here on a Hugging Face model loads with ``peft.PeftModel.from_pretrained``
and a peft prompt loads here. Prefixes are saved folded, ``[n, L * 2 * d]`` like peft. ``task_type`` is peft's:
``SEQ_CLS`` for a classifier, ``CAUSAL_LM`` for a language model, ``FEATURE_EXTRACTION`` for a headless encoder
(without it peft would load a plain PeftModel that ignores the prompt).

The task head of a Hugging Face classifier travels inside ``adapter_model.safetensors`` under peft's names
(``base_model.classifier.weight`` ...), as peft's ``modules_to_save`` do; a course model's head goes to
``head_model.safetensors`` (``head_patterns``), like every other course module's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

import torch
from torch import nn

from ..checkpoints import load_head_if_saved, read_saved_config, read_tensors, save_folder
from ..models.encoder import Encoder, EncoderForMaskedLM, EncoderForSequenceClassification
from ..models.gpt import GPT
from .prefix_tuning import PrefixEncoder, prefix_encoder_of
from .prompt_tuning import PromptTuningModel
from .freezing import DEFAULT_HEAD_PATTERNS
from .spine import HEAD_FILE, head_tensors, is_classifier, save_head

CONFIG_FILE, WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"  # peft's file names
_PEFT_INIT = {"random": "RANDOM", "vocab": "SAMPLE_VOCAB", "text": "RANDOM"}  # TEXT would make peft want a tokenizer


PEFT_HEAD_PREFIX = "base_model."  # where peft keeps a SEQ_CLS model's head (modules_to_save) in its file


def _task_type(model: nn.Module) -> str:
    if is_classifier(model):
        return "SEQ_CLS"
    if isinstance(model, GPT) or type(model).__name__.endswith(("ForCausalLM", "LMHeadModel")):
        return "CAUSAL_LM"
    return "FEATURE_EXTRACTION"


def _is_hf(model: Optional[nn.Module]) -> bool:
    """A Hugging Face model (its config has a model_type), as opposed to a course model."""
    return model is not None and hasattr(getattr(model, "config", None), "model_type")


def _peft_head(model: nn.Module, head_patterns: list[str]) -> dict[str, torch.Tensor]:
    """A Hugging Face classifier's head under peft's names (the default head patterns unless others are given)."""
    return {PEFT_HEAD_PREFIX + name: tensor
            for name, tensor in head_tensors(model, head_patterns or list(DEFAULT_HEAD_PATTERNS)).items()}


def _shape_info(model: nn.Module) -> tuple[Optional[int], Optional[int]]:
    """(n_layers, n_heads) of a course model; (None, None) otherwise (peft reads them from the model)."""
    if isinstance(model, (GPT, Encoder, EncoderForMaskedLM, EncoderForSequenceClassification)):
        return model.config.n_layers, model.config.n_heads
    return None, None


def save_prompt(obj: nn.Module, directory: str | Path, head_patterns: Iterable[str] = ()) -> Path:
    """Save a PromptTuningModel's prompt, or a prefix-tuned model's / PrefixEncoder's folded prefixes (+ head)."""
    from safetensors.torch import save_file

    head_patterns = list(head_patterns)
    if isinstance(obj, PromptTuningModel):
        model, n, d = obj.model, obj.n_virtual_tokens, obj.prompt.size(1)
        n_layers, n_heads = _shape_info(model)
        tensor = obj.prompt.detach()
        meta = {"peft_type": "PROMPT_TUNING", "task_type": _task_type(model), "num_virtual_tokens": n,
                "token_dim": d, "num_transformer_submodules": 1, "num_layers": n_layers,
                "num_attention_heads": n_heads, "prompt_tuning_init": _PEFT_INIT[obj.init]}
        extra = {"course_init": obj.init}
    else:
        model = None if isinstance(obj, PrefixEncoder) else obj
        encoder = obj if isinstance(obj, PrefixEncoder) else prefix_encoder_of(obj)
        if model is None and head_patterns:
            raise ValueError("A PrefixEncoder alone has no head: pass the model to save its head too.")
        with torch.no_grad():  # folded values, peft's layout [n, L * 2 * d]
            tensor = encoder().permute(2, 0, 1, 3).reshape(encoder.n_prefix, -1)
        n_heads = _shape_info(model)[1] if model is not None else None
        meta = {"peft_type": "PREFIX_TUNING", "task_type": _task_type(model) if model is not None else None,
                "num_virtual_tokens": encoder.n_prefix, "token_dim": encoder.d_model, "num_transformer_submodules": 1,
                "num_layers": encoder.n_layers, "num_attention_heads": n_heads, "prefix_projection": False}
        extra = {}
    meta.update({"base_model_name_or_path": None, "revision": None, "inference_mode": True})
    tensors = {"prompt_embeddings": tensor.cpu().contiguous()}
    if _is_hf(model) and meta["task_type"] == "SEQ_CLS":  # peft keeps the head in the adapter file
        tensors.update(_peft_head(model, head_patterns))  # peft's SEQ_CLS model puts its classifier there itself
        head_patterns = []

    def write(folder: Path) -> None:
        save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "pt", **extra})
        if head_patterns:
            save_head(model, folder, head_patterns)
        (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2))

    return save_folder(directory, write, CONFIG_FILE,
                       lambda saved: saved.get("peft_type") in ("PROMPT_TUNING", "PREFIX_TUNING"), "prompt or prefix")


def load_prompt(obj: nn.Module, directory: str | Path) -> nn.Module:
    """Load :func:`save_prompt`'s files into a PromptTuningModel / prefix-tuned model / PrefixEncoder of that shape.

    A reparametrised PrefixEncoder is folded first: the saved prefixes are the MLP's output.
    The head is loaded too when it was saved (into the wrapped / prefix-tuned model).
    """
    directory = Path(directory)
    meta = read_saved_config(directory, CONFIG_FILE, WEIGHTS_FILE, "peft prompt or prefix (save_prompt)",
                             ("peft_type", "num_virtual_tokens"))
    tensors = read_tensors(directory / WEIGHTS_FILE)
    if "prompt_embeddings" not in tensors:
        raise ValueError(f"{directory / WEIGHTS_FILE} has no 'prompt_embeddings' tensor (it has {sorted(tensors)[:4]})")
    saved = tensors["prompt_embeddings"]
    kind = meta.get("peft_type")
    if isinstance(obj, PromptTuningModel):
        if kind != "PROMPT_TUNING":
            raise ValueError(f"{directory} holds {kind}, not PROMPT_TUNING: load it into a prefix-tuned model.")
        if saved.shape != obj.prompt.shape:
            raise ValueError(f"The saved prompt has {saved.size(0)} virtual tokens of size {saved.size(1)}; this "
                             f"model's prompt is {tuple(obj.prompt.shape)}. Build it with add_prompt_tuning(model, "
                             f"n_virtual_tokens={saved.size(0)}) on a model with d_model={saved.size(1)}.")
        with torch.no_grad():
            obj.prompt.copy_(saved.to(obj.prompt.device, obj.prompt.dtype))
        model = obj.model
    elif isinstance(obj, PrefixEncoder) or isinstance(getattr(obj, "prefix_encoder", None), PrefixEncoder):
        encoder = obj if isinstance(obj, PrefixEncoder) else obj.prefix_encoder
        model = None if isinstance(obj, PrefixEncoder) else obj
        if kind != "PREFIX_TUNING":
            raise ValueError(f"{directory} holds {kind}, not PREFIX_TUNING: load it into a PromptTuningModel.")
        want = (meta.get("num_layers"), meta.get("num_virtual_tokens"), meta.get("token_dim"))
        have = (encoder.n_layers, encoder.n_prefix, encoder.d_model)
        if want != have or saved.shape != (encoder.n_prefix, 2 * encoder.n_layers * encoder.d_model):
            raise ValueError(f"The saved prefixes are for (n_layers, n_prefix, d_model) = {want}; this model's are "
                             f"{have}. Build them with add_prefix_tuning(model, n_prefix={want[1]}) on a model with "
                             f"{want[0]} layers of width {want[2]}.")
        encoder.fold_reparametrization()
        kv = saved.view(encoder.n_prefix, encoder.n_layers, 2, encoder.d_model).permute(1, 2, 0, 3)
        with torch.no_grad():
            encoder.prefix.copy_(kv.to(encoder.prefix.device, encoder.prefix.dtype))
    else:
        raise TypeError(f"load_prompt loads into a PromptTuningModel (add_prompt_tuning) or a prefix-tuned model / "
                        f"PrefixEncoder (add_prefix_tuning); got {type(obj).__name__} without either.")
    head = {k[len(PEFT_HEAD_PREFIX):]: t for k, t in tensors.items() if k.startswith(PEFT_HEAD_PREFIX)}
    if head or (directory / HEAD_FILE).is_file():
        if model is None:
            raise ValueError(f"{directory} also holds a task head: load into the model, not its PrefixEncoder.")
        _load_peft_head(model, head, directory)
        load_head_if_saved(model, directory / HEAD_FILE)
    return obj


def _load_peft_head(model: nn.Module, head: dict[str, torch.Tensor], directory: Path) -> None:
    """Copy a head saved under peft's names into ``model`` (every tensor must exist there with its shape)."""
    params = dict(model.named_parameters())
    for name, tensor in head.items():
        if name not in params or params[name].shape != tensor.shape:
            found = tuple(params[name].shape) if name in params else "no such parameter"
            raise ValueError(f"{directory}: the saved head tensor {name} {tuple(tensor.shape)} does not fit this "
                             f"model ({found}); load it into the model it was trained with.")
    with torch.no_grad():
        for name, tensor in head.items():
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))
