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

    def __post_init__(self):
        # These become paths under --out (predictions/<video>/<exp_id>/<frame>.png): a crafted meta
        # must not reach outside it. ReVOS's video ids hold folders (`UVO/all/-fbscFfkh4M`).
        self.video = plain_name(self.video, "video id", folders=True)
        self.exp_id = plain_name(self.exp_id, f"expression id of video {self.video!r}")
        self.frame_names = [plain_name(name, f"frame name of video {self.video!r}") for name in self.frame_names]

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


def plain_name(value, what: str, folders: bool = False) -> str:
    """`value` as a name that stays inside the folder it is joined to: no `..`, no leading `/`, no
    backslash (and no `/` at all unless `folders`); else one clear line naming it."""
    name = str(value)
    parts = name.split("/") if folders else [name]
    if "\\" in name or "\0" in name or any(part in ("", ".", "..") or "/" in part for part in parts):
        raise UserError(f"the dataset's {what} {name!r} is not a plain name: it could write outside --out; "
                        "fix the dataset's meta file (no '..', '/' at the start, or backslash)")
    return name


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
