"""Benchmarks whose ground truth is COCO RLE in `mask_dict.json`: MeViS and ReVOS."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from agent.evaluation.datasets.base import Dataset, Expression, as_list, each_expression, read_json, require_dir, split_layout


def _decode(rle) -> np.ndarray | None:
    if not rle:
        return None
    if isinstance(rle.get("counts"), str):
        rle = {"size": rle["size"], "counts": rle["counts"].encode()}
    decoded = mask_utils.decode(rle)
    return (decoded.sum(axis=2) if decoded.ndim == 3 else decoded) > 0


def rle_union(mask_dict: dict, anno_ids: list) -> callable:
    """Union over annotations of their per-frame RLE (None or empty → no pixels of that object)."""
    tracks = [mask_dict[str(a)] for a in anno_ids]

    def mask(index: int):
        found = None
        for track in tracks:
            current = _decode(track[index]) if index < len(track) else None
            if current is not None:
                found = current if found is None else found | current
        return found

    return mask


def read_mevis(root: Path, split: str | None = "valid_u", version: int = 1) -> Dataset:
    """MeViS: `<split>/JPEGImages`, `<split>/meta_expressions.json` (obj_id, anno_id lists), `<split>/mask_dict.json`.
    MeViS v2 (`meta_expressions_v2.json`) adds expressions with an empty `anno_id` list: they refer to
    nothing, and the right answer is no mask on any frame."""
    meta_name = "meta_expressions_v2.json" if version == 2 else "meta_expressions.json"
    split, base, meta, images = split_layout(root, split, "valid_u", meta_name)
    mask_path = base / "mask_dict.json"
    mask_dict = json.loads(mask_path.read_text()) if mask_path.is_file() else None
    dataset = Dataset("mevis" if version == 1 else "mevis-v2", root, split)
    for video, exp_id, exp, frames_dir, names in each_expression(meta, images):
        anno_ids = as_list(exp.get("anno_id", []))
        gt = rle_union(mask_dict, anno_ids) if mask_dict and "anno_id" in exp else None
        has_target = bool(anno_ids) if version == 2 else None
        dataset.expressions.append(Expression(video, exp_id, exp["exp"], frames_dir, names, gt=gt, missing_gt_is_empty=True,
                                              has_target=has_target))
    return dataset


def read_mevis_v2(root: Path, split: str | None = "valid_u") -> Dataset:
    return read_mevis(root, split, version=2)


REVOS_TYPES = {0: "referring", 1: "reasoning"}


def read_revos(root: Path, split: str | None = "valid") -> Dataset:
    """ReVOS: `JPEGImages`, `meta_expressions_<split>_.json`, `mask_dict.json`, `mask_dict_foreground.json`."""
    split = split or "valid"
    meta = read_json(root / f"meta_expressions_{split}_.json")
    images = require_dir(root / "JPEGImages")
    mask_dict = read_json(root / "mask_dict.json")
    foreground_path = root / "mask_dict_foreground.json"
    foreground = json.loads(foreground_path.read_text()) if foreground_path.is_file() else {}
    dataset = Dataset("revos", root, split)
    for video, exp_id, exp, frames_dir, names in each_expression(meta, images):
        dataset.expressions.append(Expression(
            video, exp_id, exp["exp"], frames_dir, names,
            category=REVOS_TYPES.get(exp.get("type_id")), gt=rle_union(mask_dict, as_list(exp["anno_id"])),
            foreground=_foreground(foreground, video), missing_gt_is_empty=True,
        ))
    return dataset


def _foreground(foreground: dict, video: str):
    """ReVOS's every-object mask of a video, by frame index (None when the file lacks the video)."""
    if video not in foreground:
        return None
    track = foreground[video]["masks_rle"]
    return lambda i: _decode(track[i]) if i < len(track) else None
