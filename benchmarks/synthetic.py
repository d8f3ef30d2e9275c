"""Synthetic videos generated on the fly: a lazy frame sequence, nothing held in memory."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class MovingSquares(Sequence):
    """`length` frames of `size` (w, h): a red square crossing left to right, a still green one."""

    def __init__(self, length: int, size: tuple[int, int] = (854, 480)):
        self.length, self.size = length, size

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < self.length:
            raise IndexError(index)
        w, h = self.size
        frame = np.full((h, w, 3), 40, dtype=np.uint8)
        side = h // 5
        x = int((index % 200) / 200 * (w - side))
        frame[h // 4 : h // 4 + side, x : x + side] = (220, 30, 30)
        frame[h // 2 : h // 2 + side, w // 2 : w // 2 + side] = (30, 200, 30)
        return frame
