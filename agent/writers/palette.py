"""Palette PNG masks in the DAVIS / Ref-YouTube-VOS convention: 0 = background, 1..N = object ids."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image


def davis_palette() -> np.ndarray:
    """The 256-colour DAVIS palette (the PASCAL VOC colour map): uint8 [256, 3]."""
    index = np.arange(256)
    palette = np.zeros((256, 3), dtype=np.uint8)
    for bit in range(8):
        for channel in range(3):
            palette[:, channel] |= (((index >> channel) & 1) << (7 - bit)).astype(np.uint8)
        index = index >> 3
    return palette


def label_map(masks: Mapping[int, np.ndarray], size_hw: tuple[int, int]) -> np.ndarray:
    """Object masks → one uint8 map; where objects overlap the larger id wins."""
    labels = np.zeros(size_hw, dtype=np.uint8)
    for object_id in sorted(masks):
        if not 0 < object_id < 256:
            raise ValueError(f"object id {object_id} does not fit a palette PNG (1..255)")
        labels[masks[object_id]] = object_id
    return labels


def save_palette_png(path: Path, labels: np.ndarray) -> None:
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(davis_palette().tobytes())
    image.save(path, format="PNG")


def read_palette_png(path: Path) -> np.ndarray:
    """Object ids per pixel (the palette indices), uint8 [h, w]."""
    with Image.open(path) as image:
        if image.mode not in ("P", "L"):
            raise ValueError(f"{path} is a {image.mode} PNG, not a palette mask")
        return np.array(image)
