"""Parameter-efficient fine-tuning methods, one file each, on one shared spine.

============================  ============================================================================
``spine.py``                  shared machinery: targets by name, named-adapter ledger, mark trainable, heads
``freezing.py``               selective fine-tuning: freeze / unfreeze by name, head only, top-k, BitFit
``adapters.py``               bottleneck adapters (Houlsby, Pfeiffer, parallel)
``fusion.py``                 AdapterFusion over frozen adapters
``ia3.py``                    (IA)³: learned vectors rescaling keys, values and the FFN activation
``lora.py``                   LoRA (merge / unmerge, named adapters, peft file format)
``dora.py``                   DoRA: LoRA with a learned magnitude per output (weight-decomposed)
``lora_merging.py``           a new LoRA merged from several (linear, cat, SVD, TIES, DARE), like peft
``lora_serving.py``           many LoRAs in one batch: row i uses its own adapter (peft ``adapter_names``)
``prompt_tuning.py``          prompt tuning (soft virtual tokens)
``prefix_tuning.py``          prefix tuning (key/value prefixes, reparametrisation MLP)
``prompt_files.py``           save / load prompt and prefix tuning in peft's format
``quant.py``                  NF4 / int4 block quantization and 4-bit linear layers
``qlora.py``                  QLoRA = a 4-bit base + LoRA
============================  ============================================================================
"""

from .adapters import (AdapterConfig, BottleneckAdapter, active_adapters, adapter_param_count, adapter_state_dict,
                       add_adapter, deactivate_adapters, delete_adapter, list_adapters, load_adapter,
                       mark_adapter_trainable, save_adapter, set_active_adapters)
from .dora import (DoRAConfig, DoRALinear, add_dora, dora_layers, dora_param_count, load_dora,
                   mark_dora_trainable, save_dora)
from .freezing import (bitfit, freeze_all, head_only, layer_indices, top_k_layers, trainable_names, unfreeze,
                       unfreeze_where)
from .fusion import (FusionLayer, active_fusion, add_fusion, delete_fusion, fusion_adapters, fusion_attention,
                     fusion_param_count, list_fusions, load_fusion, mark_fusion_trainable, save_fusion,
                     set_active_fusion)
from .ia3 import (IA3Linear, active_ia3, add_ia3, delete_ia3, disable_ia3, ia3_param_count, list_ia3, load_ia3,
                  mark_ia3_trainable, merge_ia3, save_ia3, set_active_ia3, unload_ia3, unmerge_ia3)
from .lora import (LoRALinear, add_lora, delete_lora, disable_lora, list_lora, load_lora, lora_param_count,
                   mark_lora_trainable, merge_and_unload, merge_lora, save_lora, set_active_lora, unmerge_lora)
from .lora_merging import add_weighted_lora, dare, magnitude_prune, task_arithmetic, ties
from .lora_serving import mixed_batch
from .prefix_tuning import (PrefixEncoder, add_prefix_tuning, mark_prefix_trainable, prefix_param_count,
                            remove_prefix_tuning)
from .prompt_files import load_prompt, save_prompt
from .prompt_tuning import PromptTuningModel, add_prompt_tuning, mark_prompt_trainable, prompt_param_count
from .qlora import prepare_qlora
from .quant import (Linear4bit, QuantizedTensor, cast_error, cast_model_bytes, dequantize, dequantize_model,
                    int4_code_book, model_weight_bytes, nf4_code_book, pack_4bit, quantize, quantize_model,
                    reconstruction_error, unpack_4bit)

__all__ = [
    "AdapterConfig", "BottleneckAdapter", "active_adapters", "adapter_param_count", "adapter_state_dict",
    "add_adapter", "deactivate_adapters", "delete_adapter", "list_adapters", "load_adapter",
    "mark_adapter_trainable", "save_adapter", "set_active_adapters",
    "DoRAConfig", "DoRALinear", "add_dora", "dora_layers", "dora_param_count", "load_dora", "mark_dora_trainable",
    "save_dora",
    "bitfit", "freeze_all", "head_only", "layer_indices", "top_k_layers", "trainable_names", "unfreeze",
    "unfreeze_where",
    "FusionLayer", "active_fusion", "add_fusion", "delete_fusion", "fusion_adapters", "fusion_attention",
    "fusion_param_count", "list_fusions", "load_fusion", "mark_fusion_trainable", "save_fusion", "set_active_fusion",
    "IA3Linear", "active_ia3", "add_ia3", "delete_ia3", "disable_ia3", "ia3_param_count", "list_ia3", "load_ia3",
    "mark_ia3_trainable", "merge_ia3", "save_ia3", "set_active_ia3", "unload_ia3", "unmerge_ia3",
    "LoRALinear", "add_lora", "delete_lora", "disable_lora", "list_lora", "load_lora", "lora_param_count",
    "mark_lora_trainable", "merge_and_unload", "merge_lora", "save_lora", "set_active_lora", "unmerge_lora",
    "add_weighted_lora", "dare", "magnitude_prune", "task_arithmetic", "ties",
    "mixed_batch",
    "PrefixEncoder", "add_prefix_tuning", "mark_prefix_trainable", "prefix_param_count", "remove_prefix_tuning",
    "load_prompt", "save_prompt",
    "PromptTuningModel", "add_prompt_tuning", "mark_prompt_trainable", "prompt_param_count",
    "prepare_qlora",
    "Linear4bit", "QuantizedTensor", "cast_error", "cast_model_bytes", "dequantize", "dequantize_model",
    "int4_code_book", "model_weight_bytes", "nf4_code_book", "pack_4bit", "quantize", "quantize_model",
    "reconstruction_error", "unpack_4bit",
]
