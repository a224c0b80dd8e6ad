"""Height estimates for slide content, in lines of body text (40px on the 1280x720 design), and figure sizing.

The numbers must agree with slides/theme/course.css: 30px body text, 21px code, 19px printed output, 20px table
rows, figures at most 430px high on a 1180px-wide content area.
"""

from __future__ import annotations

import base64
import math
import re
import struct

from nbformat import NotebookNode

CHARS_PER_LINE = 86        # body text characters per rendered line
CODE_CHARS_PER_LINE = 92   # code characters per line before it wraps
CODE_LINE = 0.72           # a code line in body-text lines (smaller font)
OUTPUT_LINE = 0.66
TABLE_ROW = 0.8
IMAGE_MAX_PX, CONTENT_WIDTH_PX, LINE_PX = 430, 1180, 40
IMAGE_MAX_UPSCALE = 2.0
HEADING_WEIGHT = {1: 2.6, 2: 1.8, 3: 1.5}

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
BOLD_LINE = re.compile(r"^\*\*[^*].*\*\*:?$")
FENCE = re.compile(r"^(```+|~~~+)")
LIST_ITEM = re.compile(r"^\s{0,3}([-*+]|\d+[.)])\s+")


def visible_length(text: str) -> int:
    """Characters a markdown line shows (markup removed, TeX counted at half its source length)."""
    text = re.sub(r"\$([^$]+)\$", lambda m: "x" * (len(m.group(1)) // 2), text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[*_`]", "", text)
    return len(text.strip())


def math_height(text: str) -> float:
    """How much taller than plain text a line with this TeX renders (fractions, cases, superscripts)."""
    if "$" not in text:
        return 1.0
    if any(tall in text for tall in ("\\begin", "\\frac", "\\sum", "\\prod", "\\sqrt")):
        return 2.0
    return 1.25 if "^" in text or "\\left" in text else 1.0


def markdown_weight(block: str) -> float:
    """Estimated height of a markdown block in lines of body text."""
    heading = HEADING.match(block)
    if heading:
        level = len(heading.group(1))
        return HEADING_WEIGHT.get(level, 1.2) * max(1, math.ceil(visible_length(heading.group(2)) / 48))
    weight, logical, fence = 0.4, [], False
    for line in block.split("\n"):
        stripped = line.strip()
        if FENCE.match(stripped):
            fence = not fence
            weight += 0.3
        elif fence:
            weight += CODE_LINE
        elif stripped.startswith("$$") or stripped.endswith("$$"):
            weight += 1.0
        elif stripped.startswith("|"):
            weight += 0 if set(stripped) <= set("|-: ") else TABLE_ROW * math_height(stripped)
        elif LIST_ITEM.match(line) or not logical:
            logical.append((visible_length(stripped), math_height(stripped)))
        else:
            length, tall = logical[-1]
            logical[-1] = (length + 1 + visible_length(stripped), max(tall, math_height(stripped)))
    return weight + sum(max(1, math.ceil(n / CHARS_PER_LINE)) * tall for n, tall in logical)


def png_size(data: str) -> tuple[int, int] | None:
    """Width and height of a base64 PNG, read from its header."""
    try:
        head = base64.b64decode(data[:48])
        width, height = struct.unpack(">II", head[16:24])
    except (ValueError, struct.error):
        return None
    return (width, height) if width and height else None


def output_text(output: NotebookNode) -> str:
    """The text of a stream or text/plain output."""
    text = output.get("text") if output.output_type == "stream" else output.get("data", {}).get("text/plain", "")
    return "".join(text) if isinstance(text, list) else (text or "")


def fit_image(output: NotebookNode, max_px: float = IMAGE_MAX_PX) -> float | None:
    """Size a PNG figure for the slide (as large as fits, at most 2x), written to its metadata; its height in px."""
    size = png_size(output.get("data", {}).get("image/png", ""))
    if size is None:
        return None
    width, height = size
    scale = min(max_px / height, CONTENT_WIDTH_PX / width, IMAGE_MAX_UPSCALE)
    output.setdefault("metadata", {})["image/png"] = {"width": round(width * scale), "height": round(height * scale)}
    return height * scale


def output_weight(output: NotebookNode) -> float:
    """Estimated height of one output in lines of body text."""
    data = output.get("data", {})
    if "image/png" in data:
        height = fit_image(output)
        return (IMAGE_MAX_PX if height is None else height) / LINE_PX + 0.4
    if any(key.startswith("image/") for key in data):
        return IMAGE_MAX_PX / LINE_PX + 0.4
    if "text/html" in data:
        rows = "".join(data["text/html"]).count("<tr")
        return min(12.0, 1.0 + TABLE_ROW * max(rows, 2))
    if output.output_type == "error":
        return 6.0
    return 0.6 + OUTPUT_LINE * output_text(output).rstrip("\n").count("\n") + OUTPUT_LINE


def input_weight(lines: list[str], mode: str) -> float:
    """Estimated height of a code input shown, collapsed or hidden."""
    rows = sum(max(1, math.ceil(len(line) / CODE_CHARS_PER_LINE)) for line in lines)
    return {"show": 0.6 + CODE_LINE * rows, "collapse": 1.1}.get(mode, 0.0)
