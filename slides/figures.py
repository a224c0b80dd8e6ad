"""Figures for slides: one panel cut out of a multi-panel notebook figure, along the white gaps between panels."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

NOTEBOOK_TEXT_PX = 10 * 90 / 72   # course_lib.plots draws text at 10 pt and 90 dpi: 12.5 px at 1x
INK = 245          # a pixel darker than this (any channel) is ink; the course figures have a white background
TOP_BAND = 0.18    # a suptitle or a figure legend lives in the top 18% of the figure


def ink_mask(image: Image.Image) -> np.ndarray:
    """True where a pixel is not background."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return (pixels < INK).any(axis=2)


def top_rows_to_drop(ink: np.ndarray, gaps: list[tuple[int, int]]) -> int:
    """Rows at the top holding figure-level text (a suptitle, a shared legend): text that crosses a gap between
    panels, or that not every panel has at that height. They are cut off rather than split between panels."""
    band = int(ink.shape[0] * TOP_BAND)
    crossing = np.zeros(band, dtype=bool)
    for start, end in gaps:
        crossing |= ink[:band, start:end].any(axis=1)
    if crossing.any():  # a title wider than its panel, or a suptitle: everything down to its last row goes
        return int(np.flatnonzero(crossing).max()) + 1
    edges = [0, *[(start + end) // 2 for start, end in gaps], ink.shape[1]]
    drop = 0
    while True:
        rows = np.flatnonzero(ink[drop:band].any(axis=1))
        if not len(rows):
            return drop
        first = drop + rows[0]
        blank = np.flatnonzero(~ink[first:band].any(axis=1))
        if not len(blank):
            return drop
        last = first + blank[0]  # the text line ends at the first blank row under it
        lines = ink[first:last]
        crosses = any(lines[:, start:end].any() for start, end in gaps)
        panels_with_text = sum(lines[:, left:right].any() for left, right in zip(edges, edges[1:]))
        if not crosses and panels_with_text == len(edges) - 1:
            return drop
        drop = last


def column_gaps(ink: np.ndarray, top: int) -> list[tuple[int, int]]:
    """Runs of blank columns (below `top`), as (start, end) pairs, widest first."""
    blank = ~ink[top:].any(axis=0)
    runs, start = [], None
    for x, free in enumerate(blank):
        if free and start is None:
            start = x
        elif not free and start is not None:
            runs.append((start, x))
            start = None
    if start is not None:
        runs.append((start, len(blank)))
    return runs


def split_points(ink: np.ndarray, panels: int) -> tuple[list[int], int]:
    """Where to cut a figure of `panels` side-by-side panels, and how many top rows to drop."""
    width = ink.shape[1]
    inner = lambda runs: [(s, e) for s, e in runs if s > width * 0.1 and e < width * 0.9]  # noqa: E731
    top = int(ink.shape[0] * TOP_BAND)
    runs = inner(column_gaps(ink, top))
    cuts = []
    for k in range(1, panels):
        target = width * k / panels
        near = [run for run in runs if abs((run[0] + run[1]) / 2 - target) < width / (2 * panels)]
        if not near:
            raise ValueError(f"no white gap between panels {k} and {k + 1} near x={target:.0f} of {width}px")
        best = max(near, key=lambda run: (run[1] - run[0]) - abs((run[0] + run[1]) / 2 - target) / 4)
        cuts.append(best)
    drop = top_rows_to_drop(ink, cuts)
    return [int((s + e) / 2) for s, e in cuts], drop


def erase_title_rest(piece: Image.Image, ink: np.ndarray, drop: int, band: int) -> Image.Image:
    """White out what is left below `drop` of the text cut off above it, in the columns that text used, down to
    the first row without it or a row that is a line across the panel (an axis spine or grid line)."""
    columns = np.flatnonzero(ink[:drop].any(axis=0))
    row = drop
    while (row < band and len(columns) and ink[row, columns].any()
           and ink[row].sum() < 0.5 * ink.shape[1]):
        row += 1
    if row == drop:
        return piece
    pixels = np.asarray(piece.convert("RGB")).copy()
    pixels[: row - drop, columns] = 255
    return Image.fromarray(pixels)


def trim(image: Image.Image, pad: int = 6) -> Image.Image:
    """The image without its blank margins (keeping `pad` pixels)."""
    ink = ink_mask(image)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if not len(rows):
        return image
    box = (max(cols[0] - pad, 0), max(rows[0] - pad, 0), min(cols[-1] + pad + 1, image.width),
           min(rows[-1] + pad + 1, image.height))
    return image.crop(box)


def panel(png: bytes, index: int, panels: int) -> bytes:
    """Panel `index` (1-based) of a figure with `panels` panels side by side, as PNG bytes."""
    if not 1 <= index <= panels:
        raise ValueError(f"panel {index} of {panels}: the panel must be between 1 and {panels}")
    image = Image.open(io.BytesIO(png))
    ink = ink_mask(image)
    cuts, drop = split_points(ink, panels)
    edges = [0, *cuts, image.width]
    left, right = edges[index - 1], edges[index]
    piece = image.crop((left, drop, right, image.height))
    if drop:  # this panel's own title may reach a few rows lower (descenders): paint those rows white
        piece = erase_title_rest(piece, ink[:, left:right], drop, int(image.height * TOP_BAND))
    piece = trim(piece)
    out = io.BytesIO()
    piece.save(out, format="PNG", optimize=True)
    return out.getvalue()


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height of PNG bytes."""
    with Image.open(io.BytesIO(png)) as image:
        return image.size
