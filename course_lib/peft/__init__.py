"""Parameter-efficient fine-tuning methods, one module each (freezing/BitFit first; adapters, LoRA, ... follow)."""

from .freezing import (bitfit, freeze_all, head_only, layer_indices, top_k_layers, trainable_names, unfreeze,
                       unfreeze_where)

__all__ = ["bitfit", "freeze_all", "head_only", "layer_indices", "top_k_layers", "trainable_names", "unfreeze",
           "unfreeze_where"]
