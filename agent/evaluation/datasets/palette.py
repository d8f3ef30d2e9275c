"""Benchmarks whose ground truth is PNG masks: the generic layout, Ref-YouTube-VOS, Ref-DAVIS17, Long-RVOS."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np

from agent.evaluation.datasets.base import Dataset, Expression, as_list, each_expression, read_json, require_dir, split_layout
from agent.writers.palette import read_palette_png


def palette_gt(annotations: Path, names: list[str], object_ids: list[int]):
    """Union of `object_ids` in palette PNGs `annotations/<frame>.png`; None where a frame has no PNG."""
    ids = np.array(object_ids)

    def mask(index: int):
        path = annotations / f"{names[index]}.png"
        return np.isin(read_palette_png(path), ids) if path.is_file() else None

    return mask


def _meta_expressions(dataset: Dataset, meta: dict, images: Path, annotations: Path | None) -> Dataset:
    for video, exp_id, exp, frames_dir, names in each_expression(meta, images):
        gt = None
        if annotations is not None and (annotations / video).is_dir() and "obj_id" in exp:
            gt = palette_gt(annotations / video, names, [int(i) for i in as_list(exp["obj_id"])])
        dataset.expressions.append(Expression(video, exp_id, exp["exp"], frames_dir, names, category=exp.get("category"), gt=gt))
    return dataset


def read_generic(root: Path, split: str | None = None) -> Dataset:
    """`meta_expressions.json` + `JPEGImages/<video>/` + `Annotations/<video>/` (palette) under root[/split]."""
    base = root / split if split else root
    meta = read_json(base / "meta_expressions.json")
    annotations = base / "Annotations"
    dataset = Dataset("generic", root, split)
    return _meta_expressions(dataset, meta, require_dir(base / "JPEGImages"), annotations if annotations.is_dir() else None)


def read_ref_youtube_vos(root: Path, split: str | None = "valid") -> Dataset:
    """Ref-YouTube-VOS: `meta_expressions/<split>/meta_expressions.json`, `<split>/JPEGImages`, `<split>/Annotations`."""
    split = split or "valid"
    meta = read_json(root / "meta_expressions" / split / "meta_expressions.json")
    annotations = root / split / "Annotations"
    dataset = Dataset("ref-youtube-vos", root, split, submission_prefix="Annotations")
    return _meta_expressions(dataset, meta, require_dir(root / split / "JPEGImages"), annotations if annotations.is_dir() else None)


def read_ref_davis17(root: Path, split: str | None = "val") -> Dataset:
    """Ref-DAVIS17: DAVIS 2017 folders + Khoreva et al.'s `davis_text_annotations/Davis17_annot{1,2}.txt`.

    Each line is `<video> <object id> "<expression>"`; both annotators' expressions are read
    (expression ids `a1-<obj>` and `a2-<obj>`); the split comes from `ImageSets/2017/<split>.txt`.
    """
    split = split or "val"
    davis = root / "DAVIS" if (root / "DAVIS").is_dir() else root
    images = require_dir(davis / "JPEGImages" / "480p")
    annotations = davis / "Annotations" / "480p"
    listing = davis / "ImageSets" / "2017" / f"{split}.txt"
    videos = set(listing.read_text().split()) if listing.is_file() else None
    dataset = Dataset("ref-davis17", root, split)
    for annotator in (1, 2):
        path = root / "davis_text_annotations" / f"Davis17_annot{annotator}.txt"
        if not path.is_file():
            continue
        for line in path.read_text(encoding="latin-1").splitlines():
            parts = shlex.split(line) if line.strip() else []
            if len(parts) < 3 or (videos is not None and parts[0] not in videos):
                continue
            video, obj_id, text = parts[0], int(parts[1]), " ".join(parts[2:])
            frames_dir = images / video
            names = sorted(p.stem for p in frames_dir.glob("*.jpg"))
            gt = palette_gt(annotations / video, names, [obj_id]) if (annotations / video).is_dir() else None
            dataset.expressions.append(Expression(video, f"a{annotator}-{obj_id}", text, frames_dir, names, gt=gt))
    return dataset


def read_long_rvos(root: Path, split: str | None = "valid") -> Dataset:
    """Long-RVOS: `<split>/meta_expressions.json`, `<split>/JPEGImages`, `<split>/Annotations/<video>/<obj>/<frame>.png`."""
    split, base, meta, images = split_layout(root, split, "valid")
    annotations = base / "Annotations"
    dataset = Dataset("long-rvos", root, split)
    for video, exp_id, exp, frames_dir, names in each_expression(meta, images):
        gt = None
        if annotations.is_dir():
            gt = _binary_union([annotations / video / str(o) for o in as_list(exp["obj_id"])], names)
        dataset.expressions.append(
            Expression(video, exp_id, exp["exp"], frames_dir, names, category=exp.get("type"), gt=gt, missing_gt_is_empty=True)
        )
    return dataset


def _binary_union(folders: list[Path], names: list[str]):
    def mask(index: int):
        found = None
        for folder in folders:
            path = folder / f"{names[index]}.png"
            if path.is_file():
                current = read_palette_png(path) > 0
                found = current if found is None else found | current
        return found

    return mask
