"""Parameter-efficient fine-tuning methods, one module each: freezing/BitFit, bottleneck adapters, ..."""

from .adapters import (AdapterConfig, BottleneckAdapter, active_adapters, adapter_param_count, adapter_state_dict,
                       add_adapter, deactivate_adapters, delete_adapter, list_adapters, load_adapter, save_adapter,
                       set_active_adapters, train_adapter)
from .freezing import (bitfit, freeze_all, head_only, layer_indices, top_k_layers, trainable_names, unfreeze,
                       unfreeze_where)

__all__ = [
    "AdapterConfig", "BottleneckAdapter", "active_adapters", "adapter_param_count", "adapter_state_dict",
    "add_adapter", "deactivate_adapters", "delete_adapter", "list_adapters", "load_adapter", "save_adapter",
    "set_active_adapters", "train_adapter",
    "bitfit", "freeze_all", "head_only", "layer_indices", "top_k_layers", "trainable_names", "unfreeze",
    "unfreeze_where",
]
