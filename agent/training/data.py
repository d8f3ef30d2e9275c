"""Training samples: short clips of referring videos, and single images of referring-image data.

Videos come from the evaluation's dataset readers (any format `rvos eval` reads); images from
COCO-style data with RefCOCO-style referring expressions (`instances.json` + `refs.json`; JSON only,
masks decoded with pycocotools).
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
from PIL import Image

from agent.errors import UserError
from agent.evaluation.datasets.base import Expression
from agent.prompts import render


@dataclass
class Referral:
    expression: str
    masks: np.ndarray  # [T, H, W] bool: what it refers to, on every frame of the clip


@dataclass
class Clip:
    """Frames and the referrals asked about them, one conversation turn each (Sa2VA samples several
    objects per video; each answer's `[SEG]` prompts SAM 2 for its object, all in one batch)."""

    frames: list[Image.Image]  # in temporal order
    keyframes: list[int]  # clip positions the VLM sees and SAM 2 is prompted on
    referrals: list[Referral]
    answer: str  # every turn's answer

    @property
    def masks(self) -> np.ndarray:
        """[T, N, H, W]: the referrals' masks."""
        return np.stack([r.masks for r in self.referrals], axis=1)


def seg_answer(objects: int = 1) -> str:
    """The answer a sample is trained on (prompts/default/answer.txt)."""
    return render("answer", segs=" and ".join(["[SEG]"] * objects))


def keyframe_positions(length: int, count: int) -> list[int]:
    """`count` positions spread over the clip, the first included."""
    count = max(1, min(count, length))
    return sorted({round(n * (length - 1) / max(count - 1, 1)) for n in range(count)}) if count > 1 else [0]


class VideoClips:
    """Random clips of `frames` annotated frames (sorted) from referring-video expressions, each
    with up to `referrals` expressions of its video."""

    def __init__(self, expressions: list[Expression], frames: int = 4, keyframes: int = 2, referrals: int = 1):
        self.expressions = [e for e in expressions if e.gt is not None]
        if not self.expressions:
            raise UserError("the training data has no expression with ground-truth masks")
        self.frames, self.keyframes, self.referrals = frames, keyframes, referrals
        self.by_video: dict[str, list[Expression]] = defaultdict(list)
        for expression in self.expressions:
            self.by_video[expression.video].append(expression)

    def __len__(self) -> int:
        return len(self.expressions)

    def sample(self, rng: random.Random) -> Clip:
        first = rng.choice(self.expressions)
        others = [e for e in self.by_video[first.video] if e is not first]
        chosen = [first, *rng.sample(others, min(len(others), self.referrals - 1))]
        length = len(first.frame_names)

        def annotated(i: int) -> list | None:
            masks = [e.gt(i) for e in chosen]
            return masks if all(m is not None for m in masks) else None

        for _ in range(10):
            indices = sorted(rng.sample(range(length), min(self.frames, length)))
            masks = [annotated(i) for i in indices]
            if all(m is not None for m in masks):
                break
        else:  # the first frames where every chosen expression is annotated, each read once
            found = list(islice(((i, m) for i in range(length) if (m := annotated(i)) is not None), self.frames))
            if not found:
                texts = ", ".join(repr(e.text) for e in chosen)
                raise UserError(f"{first.video}: no frame has ground truth for all of {texts}; set referrals: 1")
            indices, masks = [i for i, _ in found], [m for _, m in found]
        paths = first.frame_paths()
        frames = [Image.open(paths[i]).convert("RGB") for i in indices]
        referrals = [Referral(e.text, np.stack([m[n] for m in masks]).astype(bool)) for n, e in enumerate(chosen)]
        return Clip(frames, keyframe_positions(len(frames), self.keyframes), referrals, seg_answer())


class ReferringImages:
    """COCO images with RefCOCO-style expressions: each sample is a one-frame clip."""

    def __init__(self, instances: Path, refs: Path, images: Path, split: str | None = "train"):
        from pycocotools.coco import COCO

        for path in (instances, refs, images):
            if not Path(path).exists():
                raise UserError(f"{path} not found; image referring data needs instances.json, refs.json and the image folder")
        self.coco = COCO(str(instances))
        self.images = Path(images)
        entries = json.loads(Path(refs).read_text())
        self.samples = [
            (ref["image_id"], ref["ann_id"], sentence["sent"])
            for ref in entries if split is None or ref.get("split") == split
            for sentence in ref["sentences"]
        ]
        if not self.samples:
            raise UserError(f"{refs} has no referring expressions for split {split!r}")

    def __len__(self) -> int:
        return len(self.samples)

    def sample(self, rng: random.Random) -> Clip:
        image_id, ann_id, sentence = rng.choice(self.samples)
        info = self.coco.loadImgs(image_id)[0]
        image = Image.open(self.images / info["file_name"]).convert("RGB")
        mask = self.coco.annToMask(self.coco.loadAnns(ann_id)[0]).astype(bool)
        return Clip([image], [0], [Referral(sentence, mask[None])], seg_answer())


class Mixture:
    """Samples from several sources in proportion to their sizes."""

    def __init__(self, sources: list):
        if not sources:
            raise UserError("the training config lists no data")
        self.sources = sources
        self.weights = [len(s) for s in sources]

    def sample(self, rng: random.Random) -> Clip:
        return rng.choices(self.sources, weights=self.weights)[0].sample(rng)
