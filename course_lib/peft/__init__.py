"""Parameter-efficient fine-tuning methods, one module each: freezing/BitFit, adapters, AdapterFusion, LoRA, prompt/prefix tuning, ..."""

from .adapters import (AdapterConfig, BottleneckAdapter, active_adapters, adapter_param_count, adapter_state_dict,
                       add_adapter, deactivate_adapters, delete_adapter, list_adapters, load_adapter, save_adapter,
                       set_active_adapters, train_adapter)
from .fusion import (FusionLayer, active_fusion, add_fusion, delete_fusion, fusion_adapters, fusion_attention,
                     fusion_param_count, list_fusions, load_fusion, save_fusion, set_active_fusion, train_fusion)
from .lora import (LoRALinear, add_lora, delete_lora, disable_lora, list_lora, load_lora, lora_param_count,
                   merge_and_unload, merge_lora, save_lora, set_active_lora, train_lora, unmerge_lora)
from .quant import (Linear4bit, QuantizedTensor, cast_error, cast_model_bytes, dequantize, dequantize_model,
                    int4_code_book, model_weight_bytes, nf4_code_book, pack_4bit, prepare_qlora, quantize,
                    quantize_model, reconstruction_error, unpack_4bit)
from .prompts import (PrefixEncoder, PromptTuningModel, add_prefix_tuning, add_prompt_tuning, load_prompt,
                      prefix_param_count, prompt_param_count, remove_prefix_tuning, save_prompt, train_prefix,
                      train_prompt)
from .freezing import (bitfit, freeze_all, head_only, layer_indices, top_k_layers, trainable_names, unfreeze,
                       unfreeze_where)

__all__ = [
    "AdapterConfig", "BottleneckAdapter", "active_adapters", "adapter_param_count", "adapter_state_dict",
    "add_adapter", "deactivate_adapters", "delete_adapter", "list_adapters", "load_adapter", "save_adapter",
    "set_active_adapters", "train_adapter",
    "FusionLayer", "active_fusion", "add_fusion", "delete_fusion", "fusion_adapters", "fusion_attention",
    "fusion_param_count", "list_fusions", "load_fusion", "save_fusion", "set_active_fusion", "train_fusion",
    "LoRALinear", "add_lora", "delete_lora", "disable_lora", "list_lora", "load_lora", "lora_param_count",
    "merge_and_unload", "merge_lora", "save_lora", "set_active_lora", "train_lora", "unmerge_lora",
    "Linear4bit", "QuantizedTensor", "cast_error", "cast_model_bytes", "dequantize", "dequantize_model",
    "int4_code_book", "model_weight_bytes", "nf4_code_book", "pack_4bit", "prepare_qlora", "quantize",
    "quantize_model", "reconstruction_error", "unpack_4bit",
    "PrefixEncoder", "PromptTuningModel", "add_prefix_tuning", "add_prompt_tuning", "load_prompt",
    "prefix_param_count", "prompt_param_count", "remove_prefix_tuning", "save_prompt", "train_prefix", "train_prompt",
    "bitfit", "freeze_all", "head_only", "layer_indices", "top_k_layers", "trainable_names", "unfreeze",
    "unfreeze_where",
]
