"""Image grids as PNGs a person can read.

An 8x8 digit grid is 82 pixels across, too small to see: the grid is scaled up by a whole
number, each source pixel becoming an s x s block (nearest neighbour, so no blurring and no
grey values the data does not have), and text is set in white bands around it: a title, column
headings (one per column, or one spanning several, such as "completions") and row labels
(such as "class 3"), so the picture says what it shows.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .runs import atomic_write_bytes

__all__ = [
    "FONT_PX",
    "MAX_LONG_SIDE_PX",
    "MIN_CELL_PX",
    "MIN_FONT_PX",
    "MIN_SHORT_SIDE_PX",
    "PAD",
    "Heading",
    "picture",
    "png_bytes",
    "rows_by_class",
    "save_png",
    "scale_factor",
    "tile",
    "upscale",
]

MIN_CELL_PX = 48  # each image at least this big on its short side: a digit's strokes are visible
MIN_SHORT_SIDE_PX = 400  # the grid grows to this on its short side where that is not too big ...
MAX_LONG_SIDE_PX = 2000  # ... i.e. as long as its long side stays within this (cells still >= MIN_CELL_PX)
PAD = 2  # source pixels of grey between and around the images (scaled with them)
FONT_PX = 18  # headings and labels; shrunk, down to MIN_FONT_PX, where a heading is wider than its column
MIN_FONT_PX = 10
_TITLE_PX = 22
_MARGIN = 6  # output pixels around text
_WHITE = 255
_GAP = 128  # between images: mid grey, so white strokes at an image edge stay visible
_INK = (0, 0, 0)

Heading = str | tuple[str, int]  # a column heading, or (text, how many columns it spans)


def scale_factor(cell: tuple[int, int], grid: tuple[int, int]) -> int:
    """The whole-number upscaling for a grid of ``grid`` (H, W) pixels whose images are ``cell``
    (h, w): each image at least MIN_CELL_PX, and the grid at least MIN_SHORT_SIDE_PX on its short
    side unless that pushes its long side past MAX_LONG_SIDE_PX. Never below 1."""
    for_cells = math.ceil(MIN_CELL_PX / max(1, min(cell)))
    for_picture = min(math.ceil(MIN_SHORT_SIDE_PX / max(1, min(grid))), MAX_LONG_SIDE_PX // max(1, max(grid)))
    return max(1, for_cells, for_picture)


def upscale(pixels: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of an (H, W, ...) array: each pixel becomes a factor x factor block."""
    if factor < 1:
        raise ValueError(f"the upscaling factor must be a positive integer (got {factor})")
    return pixels.repeat(factor, axis=0).repeat(factor, axis=1)


def _as_rgb8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, H, W) grey or (N, 3, H, W) colour in [0, 1] -> (N, H, W, 3) uint8."""
    x = images.detach().cpu().float().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    x = x.astype(np.float64)
    if x.ndim == 3:
        x = np.repeat(x[:, None], 3, axis=1)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images must be (N, H, W) or (N, 3, H, W), got {x.shape}")
    return np.floor(np.clip(x, 0.0, 1.0) * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)


def tile(images: torch.Tensor | np.ndarray, ncol: int) -> np.ndarray:
    """Images in rows of ``ncol``, PAD grey pixels between and around them: (H, W, 3) uint8 at the
    images' own resolution. Cells after the last image stay grey."""
    cells = _as_rgb8(images)
    n, h, w, _ = cells.shape
    if n < 1 or ncol < 1:
        raise ValueError(f"need at least one image and one column (got {n} images, {ncol} columns)")
    ncol = min(ncol, n)
    nrow = math.ceil(n / ncol)
    grid = np.full((PAD + nrow * (h + PAD), PAD + ncol * (w + PAD), 3), _GAP, np.uint8)
    for k in range(n):
        y, x = PAD + (k // ncol) * (h + PAD), PAD + (k % ncol) * (w + PAD)
        grid[y : y + h, x : x + w] = cells[k]
    return grid


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in scalable font (no font files to find); its bitmap font where FreeType is missing."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # pragma: no cover - Pillow without FreeType or before 10.1
        return ImageFont.load_default()


def _text_width(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> int:
    left, _, right, _ = font.getbbox(text)
    return math.ceil(right - left)


def _line_height(font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> int:
    """The height of a line of any text (ascenders to descenders), so bands do not depend on the words."""
    _, top, _, bottom = font.getbbox("Ag|")
    return math.ceil(bottom - top)


def _spans(headings: Sequence[Heading], ncol: int) -> list[tuple[str, int, int]]:
    """(text, first column, columns spanned) for each heading; they must cover the ``ncol`` columns."""
    out, col = [], 0
    for heading in headings:
        text, span = (heading, 1) if isinstance(heading, str) else heading
        if span < 1:
            raise ValueError(f"heading {text!r} spans {span} columns")
        out.append((text, col, span))
        col += span
    if col != ncol:
        raise ValueError(f"the headings span {col} columns, the grid has {ncol}")
    return out


def picture(
    images: torch.Tensor | np.ndarray,
    ncol: int,
    *,
    headings: Sequence[Heading] | None = None,
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Image.Image:
    """The readable picture of a grid of (N, H, W) grey or (N, 3, H, W) colour images in [0, 1]:
    ``tile`` upscaled by ``scale_factor``, with an optional title, column ``headings`` and one
    label per row (``row_labels``), black on white."""
    n, h, w = _as_rgb8(images).shape[:3]
    small = tile(images, ncol)
    ncol, nrow = min(ncol, n), math.ceil(n / min(ncol, n))
    s = scale_factor((h, w), small.shape[:2])
    grid = upscale(small, s)
    pitch_x, pitch_y = (w + PAD) * s, (h + PAD) * s

    # row labels: a band on the left as wide as the longest label
    label_font = _font(FONT_PX)
    if row_labels is not None and len(row_labels) != nrow:
        raise ValueError(f"{len(row_labels)} row labels for {nrow} rows")
    label_w = max((_text_width(t, label_font) for t in row_labels or ()), default=0)
    left = label_w + 2 * _MARGIN if row_labels else 0

    # headings: one font for all, the largest at most FONT_PX with each heading within its columns
    # (their images and the gaps beside them)
    spans = _spans(headings, ncol) if headings is not None else []
    size = FONT_PX
    while size > MIN_FONT_PX and any(
        _text_width(t, _font(size)) > span * pitch_x - _MARGIN for t, _, span in spans
    ):
        size -= 1
    head_font = _font(size)
    head_h = _line_height(head_font)
    head = head_h + 2 * _MARGIN + 4 if spans else 0  # + room for the rule under spanning headings

    title_font = _font(_TITLE_PX)
    title_w, title_h = (_text_width(title, title_font), _line_height(title_font)) if title else (0, 0)
    top = title_h + 2 * _MARGIN if title else 0

    width = max(left + grid.shape[1], title_w + 2 * _MARGIN)
    x0 = left + (width - left - grid.shape[1]) // 2  # the grid's left edge (centred under a long title)
    y0 = top + head
    canvas = Image.new("RGB", (width, y0 + grid.shape[0]), (_WHITE,) * 3)
    canvas.paste(Image.fromarray(grid, "RGB"), (x0, y0))
    draw = ImageDraw.Draw(canvas)

    if title:
        draw.text((width // 2, _MARGIN + title_h // 2), title, fill=_INK, font=title_font, anchor="mm")
    for text, col, span in spans:
        a, b = x0 + PAD * s + col * pitch_x, x0 + (col + span) * pitch_x  # the span's images, left to right
        draw.text(((a + b) // 2, top + _MARGIN + head_h // 2), text, fill=_INK, font=head_font, anchor="mm")
        if span > 1:  # a rule under the heading over the columns it covers
            y = top + head - 4
            draw.line([(a, y), (b - 1, y)], fill=_INK, width=1)
    for row, text in enumerate(row_labels or ()):
        y = y0 + PAD * s + row * pitch_y + h * s // 2
        draw.text((left - _MARGIN, y), text, fill=_INK, font=label_font, anchor="rm")
    return canvas


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="png")
    return buffer.getvalue()


def save_png(
    path: Path,
    images: torch.Tensor | np.ndarray,
    ncol: int,
    *,
    headings: Sequence[Heading] | None = None,
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
) -> None:
    """``picture`` written atomically to ``path`` (readers see the old file or the new)."""
    image = picture(images, ncol, headings=headings, row_labels=row_labels, title=title)
    atomic_write_bytes(path, png_bytes(image))


def rows_by_class(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int, list[str]]:
    """Images re-laid one row per class present, in class order and their own order within it,
    for a grid whose rows can be labelled: (images with grey filler cells, columns, row labels)."""
    classes = sorted({int(c) for c in labels.tolist()})
    rows = [torch.nonzero(labels.cpu() == c).flatten() for c in classes]
    ncol = max(len(r) for r in rows)
    filler = torch.full_like(images[:1], _GAP / 255)  # the gaps' grey: a gap, not a drawn image
    cells = [torch.cat([images[r], filler.expand(ncol - len(r), *images.shape[1:])]) for r in rows]
    return torch.cat(cells), ncol, [f"class {c}" for c in classes]
