"""A person's visual prompts (clicks, boxes, masks) checked against the video, whichever door they came in by
(their text syntax, `X,Y[,+|-][@FRAME]` and the like, is parsed in `agent.visual_syntax`).

Every check raises `UserError` with what is wrong and what to do, before any work starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from agent.errors import UserError

POSITIVE, NEGATIVE = 1, 0


def check_frame(frame: int, num_frames: int) -> int:
    if not isinstance(frame, (int, np.integer)) or not 0 <= frame < num_frames:
        raise UserError(f"frame {frame} is outside the video (frames 0..{num_frames - 1}); give a frame in that range")
    return int(frame)


def check_points(points: Sequence, labels: Sequence | None, size: tuple[int, int]) -> tuple[list[tuple[float, float]], list[int]]:
    """Clicks (x, y) inside a frame of `size` (width, height); labels 1 (on the object) or 0 (not)."""
    width, height = size
    points = [tuple(float(v) for v in p) for p in points]
    if not points or any(len(p) != 2 for p in points):
        raise UserError("give at least one click as (x, y) in frame pixels")
    labels = [POSITIVE] * len(points) if labels is None else [int(v) for v in labels]
    if len(labels) != len(points) or any(v not in (POSITIVE, NEGATIVE) for v in labels):
        raise UserError("give one label per click: 1 (on the object) or 0 (not on it)")
    for x, y in points:
        if not (0 <= x < width and 0 <= y < height):
            raise UserError(f"click ({x:g}, {y:g}) is outside the {width}x{height} frame; x must be in 0..{width - 1}, y in 0..{height - 1}")
    return points, labels


def check_box(box: Sequence, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """A box (x0, y0, x1, y1) with area, inside the frame."""
    width, height = size
    if len(box) != 4:
        raise UserError("a box is x0,y0,x1,y1 in frame pixels")
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise UserError(f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) has no area; give x0 < x1 and y0 < y1")
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise UserError(f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) leaves the {width}x{height} frame; keep it inside")
    return x0, y0, x1, y1


def check_mask(mask, size: tuple[int, int]) -> np.ndarray:
    """A bool mask of the frame's size (height, width) with at least one pixel set."""
    width, height = size
    mask = np.asarray(mask)
    if mask.shape != (height, width):
        raise UserError(f"the mask is {mask.shape[1] if mask.ndim > 1 else '?'}x{mask.shape[0]}, the video is {width}x{height}; give a mask of the frame's size")
    mask = mask.astype(bool)
    if not mask.any():
        raise UserError("the mask is empty; mark at least one pixel of the object")
    return mask


def read_mask_file(path: Path | str) -> dict[int, np.ndarray]:
    """A palette or grey PNG whose non-zero values are object ids (the DAVIS first-frame convention)."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L", "1", "I", "I;16"):
                raise UserError(f"{path} is an {image.mode} image; give a palette or grey PNG whose non-zero values are object ids")
            ids = np.asarray(image).astype(np.int64)
    except (FileNotFoundError, IsADirectoryError):
        raise UserError(f"mask file {path} not found; give a PNG of the frame's size") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"cannot read mask file {path}: {exc}; give a palette or grey PNG") from None
    objects = {int(i): ids == i for i in np.unique(ids) if i not in (0, 255)}  # 255: DAVIS's "void" border
    if not objects:
        raise UserError(f"the mask {path} is empty; mark the object with non-zero pixel values")
    return objects
