"""Per-expression and per-folder scoring with the official protocols."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.errors import UserError
from agent.evaluation.metrics import contour_accuracy, jf, region_similarity, temporal_iou
from agent.writers.palette import read_palette_png


class FrameScorer:
    """Accumulates one expression's frames; `result()` gives J, F, J&F and the extras.

    tIoU/vIoU (Long-RVOS) use the frames where the target is present in the prediction or
    the ground truth; A (pixel accuracy) and R (robustness) are ReVOS's, R needing the video's
    foreground (every annotated object): R = max(1 − |pred ∖ gt| / |foreground|, 0) per frame.
    """

    def __init__(self) -> None:
        self.j: list[float] = []
        self.f: list[float] = []
        self.frame_indices: list[int] = []
        self.pred_present: list[bool] = []
        self.gt_present: list[bool] = []
        self.accuracy: list[float] = []
        self.robustness: list[float] = []

    def add(self, index: int, pred: np.ndarray, gt: np.ndarray, foreground: np.ndarray | None = None) -> None:
        pred, gt = pred.astype(bool), gt.astype(bool)
        self.frame_indices.append(index)
        self.j.append(region_similarity(pred, gt))
        self.f.append(contour_accuracy(pred, gt))
        self.pred_present.append(bool(pred.any()))
        self.gt_present.append(bool(gt.any()))
        self.accuracy.append(float(np.mean(pred == gt)))
        if foreground is not None:
            outside = np.count_nonzero(pred & ~gt)
            self.robustness.append(max(1.0 - outside / (np.count_nonzero(foreground) + 1e-6), 0.0))

    def result(self, skip_first_last: bool = False) -> dict:
        keep = slice(1, -1) if skip_first_last and len(self.j) > 2 else slice(None)
        if not self.j[keep]:
            raise ValueError("no annotated frame to score")
        out = jf(self.j[keep], self.f[keep]) | {"frames": len(self.j[keep])}
        both = np.array(self.pred_present) & np.array(self.gt_present)
        either = np.count_nonzero(np.array(self.pred_present) | np.array(self.gt_present))
        out["tIoU"] = temporal_iou(self.pred_present, self.gt_present)
        out["vIoU"] = 1.0 if either == 0 else float(np.array(self.j)[both].sum() / either)
        out["A"] = float(np.mean(self.accuracy))
        if self.robustness:
            out["R"] = float(np.mean(self.robustness))
        return out

    def per_frame_j(self) -> list[list[float]]:
        return [[i, round(j, 6)] for i, j in zip(self.frame_indices, self.j)]


def _labels_or_empty(path: Path, shape: tuple[int, int]) -> np.ndarray:
    return read_palette_png(path) if path.is_file() else np.zeros(shape, dtype=np.uint8)


def score_folders(gt_root: Path, pred_root: Path, skip_first_last: bool = False) -> dict:
    """`rvos score`: GT_ROOT/Annotations/<video>/<frame>.png against PRED_ROOT/<video>/<frame>.png."""
    annotations = gt_root / "Annotations"
    if not annotations.is_dir():
        raise UserError(f"{annotations} not found; GT_ROOT must hold Annotations/<video>/<frame>.png")
    if not pred_root.is_dir():
        raise UserError(f"{pred_root} not found; PRED_ROOT must hold <video>/<frame>.png")
    videos = sorted(p.name for p in annotations.iterdir() if p.is_dir())
    if not videos:
        raise UserError(f"{annotations} holds no video folders")
    report: dict = {"protocol": "skip-first-last" if skip_first_last else "all-frames", "videos": {}}
    per_object = []
    for video in videos:
        frames = sorted((annotations / video).glob("*.png"))
        gts = [read_palette_png(p) for p in frames]
        ids = sorted(set(np.unique(np.stack(gts)).tolist()) - {0, 255})
        scorers = {i: FrameScorer() for i in ids}
        for index, (path, gt) in enumerate(zip(frames, gts)):
            pred = _labels_or_empty(pred_root / video / path.name, gt.shape)
            if pred.shape != gt.shape:
                raise UserError(f"{pred_root / video / path.name} is {pred.shape[::-1]}, ground truth is {gt.shape[::-1]}")
            for i in ids:
                scorers[i].add(index, pred == i, gt == i)
        report["videos"][video] = {}
        for i in ids:
            result = scorers[i].result(skip_first_last)
            report["videos"][video][str(i)] = {k: result[k] for k in ("J", "F", "JF", "frames")}
            per_object.append(result)
    report["overall"] = jf([r["J"] for r in per_object], [r["F"] for r in per_object])
    return report
