"""`rvos train CONFIG`: the training config, a YAML file validated against these dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import UserError
from agent.training.model import LossWeights, Trainable


@dataclass
class DataSource:
    format: str = "generic"  # any `rvos eval` format, "synthetic" (generated into <out>/data), or "refcoco"
    root: str | None = None
    split: str | None = None
    videos: int = 200  # synthetic: how many
    seed: int = 0  # synthetic: generator seed
    contrasts: list[str] = field(default_factory=lambda: ["colour", "shape", "motion", "size", "position"])  # synthetic
    instances: str | None = None  # refcoco: COCO instances.json
    refs: str | None = None  # refcoco: refs.json
    images: str | None = None  # refcoco: image folder


@dataclass
class TrainConfig:
    model: str = "tiny"  # a Sa2VA checkpoint (folder or hub id), or "tiny" for a random tiny one
    out: str = "runs/sa2va"
    data: list[DataSource] = field(default_factory=lambda: [DataSource(format="synthetic")])
    steps: int = 1000
    lr: float = 1e-4
    projector_lr: float | None = None  # the [SEG] projector's learning rate (default: lr)
    weight_decay: float = 0.0
    warmup: int = 20
    grad_clip: float = 1.0
    frames: int = 4  # frames per clip (SAM 2 sees all)
    keyframes: int = 2  # of which the VLM sees and SAM 2 is prompted on
    referrals: int = 3  # expressions of a video asked in one clip, one conversation turn each (fewer if it has fewer)
    seed: int = 0
    device: str = "auto"
    mixed_precision: str = "no"  # accelerate: no | fp16 | bf16
    save_every: int = 200
    log_every: int = 10
    sam2_config: str | None = None
    trainable: Trainable = field(default_factory=Trainable)
    loss: LossWeights = field(default_factory=LossWeights)


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """The YAML at `path` (+ `key=value` overrides) merged over the defaults; unknown keys are errors."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = Path(path)
    if not path.is_file():
        raise UserError(f"training config {path} not found; see the README's Training section for an example")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.load(path), OmegaConf.from_dotlist(overrides or []))
        config = OmegaConf.to_object(merged)
    except (OmegaConfBaseException, ValueError) as exc:
        message = str(exc).strip().splitlines()[0]
        raise UserError(f"training config {path}: {message}") from None
    if config.steps < 1 or config.frames < 1 or config.referrals < 1 or not 1 <= config.keyframes <= config.frames:
        raise UserError(f"training config {path}: need steps ≥ 1, referrals ≥ 1 and 1 ≤ keyframes ≤ frames")
    return config
