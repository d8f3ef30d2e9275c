"""Motion-aware memory for SAM 2 tracking, as SAMURAI does it (Yang et al., 2024).

A constant-velocity Kalman filter (OpenCV's) follows each object's box. On tracking frames SAM 2
proposes several candidate masks; each is scored `kf_weight · IoU(candidate box, predicted box) +
(1 − kf_weight) · SAM 2's own IoU estimate`, and SAM 2 keeps the best by that score. A frame enters
the memory bank only when it is confident: SAM 2's IoU estimate ≥ `min_mask_iou`, the object score
says present, and (once the filter is stable) the chosen mask overlaps the predicted box.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch


def mask_boxes(masks: torch.Tensor) -> np.ndarray:
    """Boxes (x0, y0, x1, y1) of `masks > 0` [N, H, W]; NaN rows for empty masks."""
    present = (masks > 0).cpu().numpy()
    boxes = np.full((len(present), 4), np.nan)
    for n, mask in enumerate(present):
        ys, xs = np.nonzero(mask)
        if len(xs):
            boxes[n] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return boxes


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box with each row of `boxes` (0 where a box is NaN)."""
    x0, y0 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x1, y1 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return np.nan_to_num(inter / np.where(union > 0, union, np.nan))


class BoxKalman:
    """Constant velocity on (cx, cy, w, h): 8 states, 4 measured."""

    def __init__(self, box: np.ndarray):
        kf = cv2.KalmanFilter(8, 4)
        kf.transitionMatrix = np.eye(8, dtype=np.float32)
        for i in range(4):
            kf.transitionMatrix[i, i + 4] = 1.0
        kf.measurementMatrix = np.eye(4, 8, dtype=np.float32)
        kf.processNoiseCov = np.eye(8, dtype=np.float32) * 1e-2
        kf.measurementNoiseCov = np.eye(4, dtype=np.float32) * 1e-1
        kf.errorCovPost = np.eye(8, dtype=np.float32)
        kf.statePost = np.concatenate([self._measure(box), np.zeros((4, 1), np.float32)])
        self.kf = kf

    @staticmethod
    def _measure(box: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = box
        return np.array([[(x0 + x1) / 2], [(y0 + y1) / 2], [x1 - x0], [y1 - y0]], dtype=np.float32)

    def predict(self) -> np.ndarray:
        cx, cy, w, h = self.kf.predict()[:4, 0]
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])

    def update(self, box: np.ndarray) -> None:
        self.kf.correct(self._measure(box))


@dataclass
class MotionPrior:
    """One object's filter, the candidate rescoring SAM 2 calls, and the memory gate."""

    kf_weight: float = 0.25
    min_mask_iou: float = 0.5
    stable_frames: int = 3  # frames tracked before the filter may re-rank candidates
    filter: BoxKalman | None = None
    stable: int = 0
    _predicted: np.ndarray | None = None
    _chosen_iou: float = 1.0  # SAM 2's own IoU estimate for the candidate it kept
    _reranked: bool = False

    def start(self, mask: torch.Tensor) -> None:
        """(Re)start from a prompted frame's mask [H, W]."""
        box = mask_boxes(mask[None])[0]
        self.filter = None if np.isnan(box).any() else BoxKalman(box)
        self.stable = 0

    def rescore(self, candidates: torch.Tensor, ious: torch.Tensor) -> torch.Tensor:
        """SAM 2's candidate masks [1, K, H, W] and IoU estimates [1, K] → the scores its argmax uses."""
        scores = ious
        self._reranked = False
        if self.filter is not None:
            self._predicted = self.filter.predict()
            if self.stable >= self.stable_frames:
                motion = box_iou(self._predicted, mask_boxes(candidates[0]))
                scores = self.kf_weight * torch.as_tensor(motion, dtype=ious.dtype, device=ious.device)[None] + (1 - self.kf_weight) * ious
                self._reranked = True
        self._chosen_iou = float(ious[0, int(scores[0].argmax())])
        return scores

    def observe(self, mask: torch.Tensor, object_score: float) -> bool:
        """Take the chosen mask [H, W]; True when the frame may enter the memory bank."""
        box = mask_boxes(mask[None])[0]
        present = object_score > 0 and not np.isnan(box).any()
        on_track = not self._reranked or (present and box_iou(self._predicted, box[None])[0] > 0)
        if present:
            if self.filter is None:
                self.filter = BoxKalman(box)
            else:
                self.filter.update(box)
            self.stable += 1
        else:
            self.stable = 0
        return present and self._chosen_iou >= self.min_mask_iou and on_track
