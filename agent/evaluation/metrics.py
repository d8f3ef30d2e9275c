"""Benchmark metrics, computed as the official toolkits compute them.

J is region IoU; F is the DAVIS boundary F-measure: one-pixel boundary maps, each dilated by
a disk of radius ceil(0.008 × image diagonal), precision and recall of matched boundary pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np

from agent.masks import mask_iou

BOUNDARY_THRESHOLD = 0.008  # fraction of the image diagonal (DAVIS 2017 toolkit's bound_th)


def region_similarity(pred: np.ndarray, gt: np.ndarray) -> float:
    """J: IoU of two binary masks; 1 when both are empty."""
    return mask_iou(pred.astype(bool), gt.astype(bool))


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """Pixels whose right, lower or lower-right neighbour differs (DAVIS `seg2bmap` at full size)."""
    mask = mask.astype(bool)
    right = np.zeros_like(mask)
    below = np.zeros_like(mask)
    diagonal = np.zeros_like(mask)
    right[:, :-1] = mask[:, 1:]
    below[:-1, :] = mask[1:, :]
    diagonal[:-1, :-1] = mask[1:, 1:]
    boundary = (mask ^ right) | (mask ^ below) | (mask ^ diagonal)
    boundary[-1, :] = mask[-1, :] ^ right[-1, :]
    boundary[:, -1] = mask[:, -1] ^ below[:, -1]
    boundary[-1, -1] = False
    return boundary


@lru_cache(maxsize=8)
def _disk(radius: int) -> np.ndarray:
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (x * x + y * y <= radius * radius).astype(np.uint8)


def _dilate(boundary: np.ndarray, disk: np.ndarray) -> np.ndarray:
    return cv2.dilate(boundary.astype(np.uint8), disk).astype(bool)


def boundary_radius(shape: Sequence[int], threshold: float = BOUNDARY_THRESHOLD) -> int:
    return int(threshold if threshold >= 1 else math.ceil(threshold * math.hypot(shape[0], shape[1])))


def contour_accuracy(pred: np.ndarray, gt: np.ndarray, threshold: float = BOUNDARY_THRESHOLD) -> float:
    """F: boundary F-measure; both empty → 1, one empty → 0."""
    pred_boundary, gt_boundary = boundary_map(pred), boundary_map(gt)
    n_pred, n_gt = np.count_nonzero(pred_boundary), np.count_nonzero(gt_boundary)
    if n_pred == 0 or n_gt == 0:
        return 1.0 if n_pred == n_gt else 0.0
    disk = _disk(boundary_radius(pred.shape, threshold))
    precision = np.count_nonzero(pred_boundary & _dilate(gt_boundary, disk)) / n_pred
    recall = np.count_nonzero(gt_boundary & _dilate(pred_boundary, disk)) / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def temporal_iou(pred_present: Sequence[bool], gt_present: Sequence[bool]) -> float:
    """Long-RVOS tIoU: frames where both see the object over frames where either does."""
    pred_present, gt_present = np.asarray(pred_present, bool), np.asarray(gt_present, bool)
    union = np.count_nonzero(pred_present | gt_present)
    return 1.0 if union == 0 else np.count_nonzero(pred_present & gt_present) / union


def jf(j_values: Sequence[float], f_values: Sequence[float]) -> dict[str, float]:
    j, f = float(np.mean(j_values)), float(np.mean(f_values))
    return {"J": j, "F": f, "JF": (j + f) / 2}
