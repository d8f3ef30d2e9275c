"""Synthetic referring videos: moving coloured shapes, distractors, expressions, exact masks.

Every video holds a contrast pair, two objects that differ in one attribute only (colour, shape,
motion, size or position), plus a random distractor; each object of the pair gets an expression
naming that attribute ("the blue circle", "the square moving left", "the biggest one", "the
circle on the left"). Deterministic from the seed; written in the generic dataset layout
(`JPEGImages/`, `Annotations/` palette PNGs, `meta_expressions.json`) that every command reads.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from agent.writers.palette import save_palette_png

COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 80, 230), "yellow": (235, 215, 40)}
SHAPES = ("circle", "square", "triangle")
MOTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "still": (0, 0), "stops": (1, 0)}
CONTRASTS = ("colour", "shape", "motion", "size", "position")
BACKGROUND = (60, 60, 60)


@dataclass
class Shape:
    object_id: int
    colour: str
    shape: str
    motion: str
    radius: float
    start: tuple[float, float]
    speed: float

    def centre(self, t: int, length: int) -> tuple[float, float]:
        dx, dy = MOTIONS[self.motion]
        steps = min(t, length // 2) if self.motion == "stops" else t  # "stops" halts half-way
        return self.start[0] + dx * self.speed * steps, self.start[1] + dy * self.speed * steps

    def draw(self, canvas: ImageDraw.ImageDraw, t: int, length: int, fill) -> None:
        x, y = self.centre(t, length)
        r = self.radius
        if self.shape == "circle":
            canvas.ellipse([x - r, y - r, x + r, y + r], fill=fill)
        elif self.shape == "square":
            canvas.rectangle([x - r, y - r, x + r, y + r], fill=fill)
        else:
            canvas.polygon([(x, y - r), (x + r, y + r * 0.8), (x - r, y + r * 0.8)], fill=fill)


def motion_phrase(motion: str) -> str:
    return {"still": "that stays still", "stops": "that stops"}.get(motion, f"moving {motion}")


def _expression(target: Shape, other: Shape, contrast: str) -> str:
    if contrast in ("colour", "shape"):
        return f"the {target.colour} {target.shape}"
    if contrast == "motion":
        return f"the {target.shape} {motion_phrase(target.motion)}"
    if contrast == "size":
        return "the biggest one" if target.radius > other.radius else f"the small {target.shape}"
    side = "left" if target.start[0] < other.start[0] else "right"
    return f"the {target.shape} on the {side}"


def _place(rng: random.Random, motion: str, radius: float, speed: float, length: int, size: int) -> tuple[float, float]:
    """A start whose whole path stays inside the frame."""
    dx, dy = MOTIONS[motion]
    travel = speed * (length // 2 if motion == "stops" else length - 1)
    lo, hi = radius + 2, size - radius - 2

    def axis(d):
        if d > 0:
            return rng.uniform(lo, max(lo, hi - travel))
        if d < 0:
            return rng.uniform(min(hi, lo + travel), hi)
        return rng.uniform(lo, hi)

    return axis(dx), axis(dy)


def make_scene(rng: random.Random, length: int, size: int, contrasts: tuple[str, ...] = CONTRASTS) -> tuple[list[Shape], list[tuple[int, str]], str]:
    """Shapes and (object id, expression) pairs; the pair differs in one attribute only."""
    contrast = rng.choice(contrasts)
    colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    motion = rng.choice([m for m in MOTIONS if m not in ("stops",)])
    radius, speed = size * rng.uniform(0.08, 0.12), size * rng.uniform(0.025, 0.04)
    first = dict(colour=colour, shape=shape, motion=motion, radius=radius)
    second = dict(first)
    if contrast == "colour":
        second["colour"] = rng.choice([c for c in COLOURS if c != colour])
    elif contrast == "shape":
        second["shape"] = rng.choice([s for s in SHAPES if s != shape])
    elif contrast == "motion":
        first["motion"], second["motion"] = rng.sample(list(MOTIONS), 2)
    elif contrast == "size":
        second["radius"] = radius * rng.uniform(1.6, 1.9)
    shapes: list[Shape] = []
    for attrs in (first, second):
        for _ in range(50):  # keep the pair apart at the start (and left/right distinct)
            start = _place(rng, attrs["motion"], attrs["radius"], speed, length, size)
            if all(math.dist(start, s.start) > attrs["radius"] + s.radius + 4 for s in shapes):
                break
        shapes.append(Shape(len(shapes) + 1, attrs["colour"], attrs["shape"], attrs["motion"], attrs["radius"], start, speed))
    # a distractor unlike both in colour and shape, still, drawn beneath them
    colour_d = rng.choice([c for c in COLOURS if c not in (first["colour"], second["colour"])])
    shape_d = rng.choice([s for s in SHAPES if s not in (first["shape"], second["shape"])] or list(SHAPES))
    radius_d = min(radius, second["radius"]) * 0.9
    distractor = Shape(0, colour_d, shape_d, "still", radius_d, _place(rng, "still", radius_d, 0, length, size), 0)
    a, b = shapes
    expressions = [(a.object_id, _expression(a, b, contrast)), (b.object_id, _expression(b, a, contrast))]
    distractor.object_id = 3
    return [distractor, *shapes], expressions, contrast


def render_video(shapes: list[Shape], length: int, size: int) -> tuple[list[Image.Image], list[np.ndarray]]:
    """Frames and per-frame label maps (later-drawn shapes occlude earlier ones)."""
    frames, labels = [], []
    for t in range(length):
        image = Image.new("RGB", (size, size), BACKGROUND)
        ids = Image.new("L", (size, size), 0)
        draw_image, draw_ids = ImageDraw.Draw(image), ImageDraw.Draw(ids)
        for shape in shapes:
            shape.draw(draw_image, t, length, COLOURS[shape.colour])
            shape.draw(draw_ids, t, length, shape.object_id)
        frames.append(image)
        labels.append(np.array(ids))
    return frames, labels


def generate(out: Path, videos: int, seed: int = 0, length: int = 8, size: int = 112,
             contrasts: tuple[str, ...] | list[str] = CONTRASTS) -> Path:
    """Write `videos` synthetic videos under `out` in the generic layout; returns `out`."""
    unknown = set(contrasts) - set(CONTRASTS)
    if unknown or not contrasts:
        raise ValueError(f"contrasts must be among {CONTRASTS}, got {sorted(unknown) or 'none'}")
    rng = random.Random(seed)
    meta: dict = {"videos": {}}
    for n in range(videos):
        name = f"synth{seed:03d}_{n:05d}"
        shapes, expressions, contrast = make_scene(rng, length, size, tuple(contrasts))
        frames, labels = render_video(shapes, length, size)
        (out / "JPEGImages" / name).mkdir(parents=True, exist_ok=True)
        (out / "Annotations" / name).mkdir(parents=True, exist_ok=True)
        for t, (frame, label) in enumerate(zip(frames, labels)):
            frame.save(out / "JPEGImages" / name / f"{t:05d}.jpg", quality=95)
            save_palette_png(out / "Annotations" / name / f"{t:05d}.png", label)
        meta["videos"][name] = {
            "frames": [f"{t:05d}" for t in range(length)],
            "expressions": {str(k): {"exp": text, "obj_id": obj, "category": contrast} for k, (obj, text) in enumerate(expressions)},
        }
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta_expressions.json").write_text(json.dumps(meta, indent=1))
    return out


def vocabulary() -> list[str]:
    """Every word the generator can write (for tiny word-level tokenizers)."""
    words = {"the", "moving", "that", "stays", "still", "stops", "biggest", "one", "small", "on", "left", "right"}
    words |= set(COLOURS) | set(SHAPES) | set(MOTIONS)
    return sorted(words)


def pair_choices(root: Path, predictions: Path) -> dict[str, float]:
    """Per contrast (and "all"): the fraction of expressions whose predicted masks (`rvos eval`'s
    `predictions/<video>/<exp id>/<frame>.png`) overlap the referred object more than its partner."""
    from agent.writers.palette import read_palette_png

    meta = json.loads((Path(root) / "meta_expressions.json").read_text())
    right: dict[str, list[bool]] = {}
    for video, info in meta["videos"].items():
        for exp_id, exp in info["expressions"].items():
            target, partner = exp["obj_id"], 3 - exp["obj_id"]  # the pair is objects 1 and 2
            scores = np.zeros(2)
            for name in info["frames"]:
                labels = read_palette_png(Path(root) / "Annotations" / video / f"{name}.png")
                pred = np.array(Image.open(Path(predictions) / video / exp_id / f"{name}.png")) > 0
                for k, obj in enumerate((target, partner)):
                    gt = labels == obj
                    scores[k] += (pred & gt).sum() / max((pred | gt).sum(), 1)
            right.setdefault(exp["category"], []).append(bool(scores[0] > scores[1]))
    result = {category: float(np.mean(v)) for category, v in sorted(right.items())}
    result["all"] = float(np.mean([x for v in right.values() for x in v]))
    return result
