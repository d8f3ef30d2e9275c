"""One frame's masks as a PNG file. Every door writes its mask files here: `rvos segment`'s `masks/` and the DAVIS
semi-supervised submission take the palette map (object ids), a referring benchmark's submission the 0/255 union
of the objects (its one target)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from agent.writers.palette import label_map, save_palette_png

MASK_STYLES = ("palette", "binary")


def save_frame_masks(path: Path, masks: Mapping[int, np.ndarray], size_hw: tuple[int, int], style: str = "palette") -> np.ndarray:
    """Write one frame's masks in `style`; returns what the file holds (the label map, or the boolean union)."""
    if style == "palette":
        labels = label_map(masks, size_hw)
        save_palette_png(path, labels)
        return labels
    if style == "binary":
        union = np.zeros(size_hw, dtype=bool)
        for mask in masks.values():
            union |= mask
        Image.fromarray(union.astype(np.uint8) * 255, mode="L").save(path)
        return union
    raise ValueError(f"mask style must be one of {MASK_STYLES}, not {style!r}")
