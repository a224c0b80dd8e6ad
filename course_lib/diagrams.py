"""Block diagrams drawn with matplotlib: where a PEFT module sits inside a transformer layer."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from .plots import COLORS, use_course_style

ADAPTER_COLOR = COLORS[1]
BLOCK_COLOR = "#dfe7ee"
NORM_COLOR = "#f3ecd9"

# Blocks of a post-LN (BERT) layer, bottom to top, per placement; "adapter" marks an inserted adapter.
LAYER_BLOCKS: dict[str, list[str]] = {
    "none": ["multi-head attention", "add & LayerNorm", "feed-forward", "add & LayerNorm"],
    "houlsby": ["multi-head attention", "adapter", "add & LayerNorm", "feed-forward", "adapter", "add & LayerNorm"],
    "pfeiffer": ["multi-head attention", "add & LayerNorm", "feed-forward", "adapter", "add & LayerNorm"],
    "parallel": ["multi-head attention", "add & LayerNorm", "feed-forward", "add & LayerNorm"],
}


def _box(ax, x: float, y: float, text: str, color: str, width: float = 2.4, height: float = 0.55) -> None:
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.05",
                                fc=color, ec="#33415c", lw=1.0))
    ax.text(x, y, text, ha="center", va="center", fontsize=8.5,
            color="white" if color == ADAPTER_COLOR else "#1b263b", weight="bold" if text == "adapter" else None)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float]) -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", color="#33415c", lw=1.0))


def draw_adapter_placement(placement: str, ax=None, title: str | None = None) -> Figure:
    """Draw one post-LN transformer layer with adapters placed the Houlsby, Pfeiffer or parallel way."""
    if placement not in LAYER_BLOCKS:
        raise ValueError(f"placement must be one of {sorted(LAYER_BLOCKS)}, got {placement!r}")
    use_course_style()
    if ax is None:
        fig, ax = plt.subplots(figsize=(3.4, 4.6))
    else:
        fig = ax.figure
    blocks = LAYER_BLOCKS[placement]
    step = 0.85
    ys = [0.9 + i * step for i in range(len(blocks))]
    _box(ax, 0, 0.0, "hidden states h", "white")
    previous = 0.0
    for y, name in zip(ys, blocks):
        color = ADAPTER_COLOR if name == "adapter" else (NORM_COLOR if "Norm" in name else BLOCK_COLOR)
        _arrow(ax, (0, previous + 0.3), (0, y - 0.3))
        _box(ax, 0, y, name, color)
        previous = y
    _arrow(ax, (0, previous + 0.3), (0, previous + step - 0.3))
    ax.text(0, previous + step, "to the next layer", ha="center", va="center", fontsize=8)
    if placement == "parallel":  # adapter beside the FFN, fed by the FFN's input, added to its output
        ffn_y = ys[blocks.index("feed-forward")]
        _box(ax, 2.2, ffn_y, "adapter", ADAPTER_COLOR, width=1.4)
        _arrow(ax, (0.0, ffn_y - step + 0.3), (2.0, ffn_y - 0.3))
        _arrow(ax, (2.2, ffn_y + 0.3), (0.9, ffn_y + step - 0.3))
        ax.text(2.25, ffn_y + 0.5, "+", fontsize=12, ha="center")
    ax.set_xlim(-1.6, 3.2 if placement == "parallel" else 1.6)
    ax.set_ylim(-0.5, previous + step + 0.4)
    ax.axis("off")
    ax.set_title(title or f"{placement} adapter" if placement != "none" else (title or "no adapter"), fontsize=10)
    return fig
