"""What every benchmark reader yields: expressions, each with its frames and (maybe) ground truth."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agent.errors import UserError

# frame index → bool mask, or None where that frame has no annotation
MaskSource = Callable[[int], "np.ndarray | None"]


@dataclass
class Expression:
    video: str
    exp_id: str
    text: str
    frames_dir: Path
    frame_names: list[str]
    category: str | None = None  # ReVOS referring/reasoning, Long-RVOS static/dynamic/hybrid
    gt: MaskSource | None = None  # union of the referred objects' masks
    foreground: MaskSource | None = None  # every annotated object (ReVOS robustness)
    missing_gt_is_empty: bool = False  # MeViS/Long-RVOS: an unannotated frame is an empty mask
    has_target: bool | None = None  # MeViS v2: False for an expression that refers to nothing (None: not asked)

    @property
    def key(self) -> str:
        return f"{self.video}/{self.exp_id}"

    def frame_paths(self) -> list[Path]:
        return [self.frames_dir / f"{name}.jpg" for name in self.frame_names]


@dataclass
class Dataset:
    name: str
    root: Path
    split: str | None
    expressions: list[Expression] = field(default_factory=list)
    submission_prefix: str = ""  # folder the evaluation server expects inside the zip

    @property
    def has_gt(self) -> bool:
        return any(e.gt is not None for e in self.expressions)

    def videos(self) -> list[str]:
        return list(dict.fromkeys(e.video for e in self.expressions))


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path} not found; check the dataset root and --split")
    return json.loads(path.read_text())


def require_dir(path: Path) -> Path:
    if not path.is_dir():
        raise UserError(f"{path} not found; check the dataset root and --split")
    return path


def frame_names_of(video: dict, frames_dir: Path) -> list[str]:
    names = video.get("frames")
    if names:
        return [str(n) for n in names]
    return sorted(p.stem for p in frames_dir.glob("*.jpg"))


def split_layout(root: Path, split: str | None, default: str, meta_name: str = "meta_expressions.json") -> tuple[str, Path, dict, Path]:
    """`<root>/<split>/meta_expressions.json` and `<root>/<split>/JPEGImages`: (split, base, meta, images)."""
    split = split or default
    base = root / split
    return split, base, read_json(base / meta_name), require_dir(base / "JPEGImages")


def each_expression(meta: dict, images: Path):
    """(video, expression id, expression entry, frames folder, frame names) for every expression."""
    for video, info in meta["videos"].items():
        frames_dir = images / video
        names = frame_names_of(info, frames_dir)
        for exp_id, exp in info["expressions"].items():
            yield video, str(exp_id), exp, frames_dir, names


def as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]
