"""Numbered outlines: each candidate's contour in its palette colour with its number, for a planner to read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from agent.writers.palette import davis_palette

_PALETTE = davis_palette()


def outline_colour(number: int) -> tuple[int, int, int]:
    """Bright enough to see on any frame: the palette colour lifted towards white."""
    r, g, b = (int(v) for v in _PALETTE[1 + (number - 1) % 255])
    return tuple(min(255, 64 + v) for v in (r, g, b))


def draw_outlines(frame: Image.Image, masks: Mapping[int, np.ndarray], width: int | None = None, caption: str = "") -> Image.Image:
    """The frame (scaled to `width`) with each mask's outline and its number at the top of the mask."""
    image = frame.convert("RGB")
    if width and image.width != width:
        image = image.resize((width, max(1, round(image.height * width / image.width))), Image.BILINEAR)
    pixels = np.array(image)
    font_size = max(12, image.height // 18)
    labels = []
    for number, mask in sorted(masks.items()):
        small = cv2.resize(mask.astype(np.uint8), image.size, interpolation=cv2.INTER_NEAREST)
        if not small.any():
            continue
        contours, _ = cv2.findContours(small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(pixels, contours, -1, outline_colour(number), thickness=max(2, image.width // 200))
        ys, xs = np.nonzero(small)
        labels.append((number, int(xs.min()), int(ys.min())))
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_size)
    for number, x, y in labels:
        left, top, right, bottom = draw.textbbox((0, 0), str(number), font=font)
        w, h = right - left + 6, bottom - top + 6
        y = max(0, y - h)
        draw.rectangle([x, y, x + w, y + h], fill=outline_colour(number), outline=(0, 0, 0))
        draw.text((x + 3 - left, y + 3 - top), str(number), fill=(0, 0, 0), font=font)
    if caption:
        top = image.height - font_size - 8  # at the bottom: the numbers sit at the objects' tops
        draw.rectangle([0, top, image.width, image.height], fill=(0, 0, 0))
        draw.text((4, top + 2), caption, fill=(255, 255, 255), font=font)
    return image


def tile(images: Sequence[Image.Image], columns: int = 2) -> Image.Image:
    """Images of one size side by side, `columns` to a row."""
    columns = max(1, min(columns, len(images)))
    rows = -(-len(images) // columns)
    width, height = images[0].size
    sheet = Image.new("RGB", (width * columns, height * rows), (0, 0, 0))
    for n, image in enumerate(images):
        sheet.paste(image.resize((width, height)), ((n % columns) * width, (n // columns) * height))
    return sheet
