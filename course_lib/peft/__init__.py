"""Parameter-efficient fine-tuning methods, one module each: freezing/BitFit, adapters, AdapterFusion, ..."""

from .adapters import (AdapterConfig, BottleneckAdapter, active_adapters, adapter_param_count, adapter_state_dict,
                       add_adapter, deactivate_adapters, delete_adapter, list_adapters, load_adapter, save_adapter,
                       set_active_adapters, train_adapter)
from .fusion import (FusionLayer, active_fusion, add_fusion, delete_fusion, fusion_adapters, fusion_attention,
                     fusion_param_count, list_fusions, load_fusion, save_fusion, set_active_fusion, train_fusion)
from .freezing import (bitfit, freeze_all, head_only, layer_indices, top_k_layers, trainable_names, unfreeze,
                       unfreeze_where)

__all__ = [
    "AdapterConfig", "BottleneckAdapter", "active_adapters", "adapter_param_count", "adapter_state_dict",
    "add_adapter", "deactivate_adapters", "delete_adapter", "list_adapters", "load_adapter", "save_adapter",
    "set_active_adapters", "train_adapter",
    "FusionLayer", "active_fusion", "add_fusion", "delete_fusion", "fusion_adapters", "fusion_attention",
    "fusion_param_count", "list_fusions", "load_fusion", "save_fusion", "set_active_fusion", "train_fusion",
    "bitfit", "freeze_all", "head_only", "layer_indices", "top_k_layers", "trainable_names", "unfreeze",
    "unfreeze_where",
]
