"""What a track says about one object, measured from its masks and the frames: when it is seen, how big it is,
where it is, and how it moves — relative to the background, so that a camera following the object does not hide
its motion, and a dancer spinning on the spot still counts as moving (its parts move, it stays where it is).

Every `describe` starts here. The lite backend puts these facts into words (prompts/lite/); a VLM is shown the
frames where the object is seen best (`best_views`). The constants that shape the words are `FACTS_SETTINGS`,
recorded with every description.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
from PIL import Image

FACTS_SETTINGS = {
    "flow_width": 160,  # frames are scaled to this width for the optical flow (motion needs no detail)
    "max_flow_pairs": 48,  # at most this many frame pairs are measured; a longer track is sampled evenly
    # fraction of the frame's diagonal per frame (about 3 px a frame at 854×480): faster is moving
    "moving_speed": 0.003,
    "fast_speed": 0.015,  # … and faster than this is fast
    "stop_frames": 3,  # a stop: at least this many measured frames in a row below moving_speed
    "closer_ratio": 1.5,  # its area in the last quarter of the track over the first: coming closer (or 1/x: away)
    "sizes": [[0.01, "tiny"], [0.05, "small"], [0.2, "medium-sized"], [1.01, "large"]],  # by mean area fraction
    "views": 3,  # frames where the object is seen best, one per stretch of the track
}


@dataclass
class ObjectFacts:
    num_frames: int
    visible: list[int]  # frames where its mask is not empty
    area: float  # mean fraction of the frame it covers where visible
    size: str  # a word from FACTS_SETTINGS["sizes"]
    centre: tuple[float, float]  # mean centre (x, y) as fractions of the width and height
    position: str  # "on the left", "in the middle", "at the top right", …
    motion: str  # "still", "moving in place", "moving"
    speed: float  # mean speed relative to the background, fraction of the diagonal per frame
    direction: str | None = None  # of its overall motion on the screen: "to the right", "up and to the left", …
    depth: str | None = None  # "closer" or "away" when its size changes that much
    stops: list[tuple[int, int]] = field(default_factory=list)  # (first, last) frames of each stop while moving
    hidden: list[tuple[int, int]] = field(default_factory=list)  # (first, last) frames of each stretch it is not seen

    def record(self) -> dict:
        return asdict(self)


def spans(frames: Iterable[int]) -> list[tuple[int, int]]:
    """Runs of consecutive frame numbers as (first, last)."""
    runs: list[list[int]] = []
    for t in frames:
        if runs and t == runs[-1][1] + 1:
            runs[-1][1] = t
        else:
            runs.append([t, t])
    return [(a, b) for a, b in runs]


def _position(x: float, y: float) -> str:
    horizontal = "left" if x < 1 / 3 else "right" if x > 2 / 3 else ""
    vertical = "top" if y < 1 / 3 else "bottom" if y > 2 / 3 else ""
    if horizontal and vertical:
        return f"at the {vertical} {horizontal}"
    if vertical:
        return f"at the {vertical}"
    return f"on the {horizontal}" if horizontal else "in the middle"


def _direction(dx: float, dy: float) -> str | None:
    """Screen direction of a net displacement; a component counts when it is at least half the other."""
    ax, ay = abs(dx), abs(dy)
    if max(ax, ay) == 0:
        return None
    sideways = ("to the right" if dx > 0 else "to the left") if ax >= 0.5 * ay else ""
    upright = ("down" if dy > 0 else "up") if ay >= 0.5 * ax else ""
    return f"{upright} and {sideways}" if upright and sideways else upright or sideways


def _small_grey(image: Image.Image, width: int) -> np.ndarray:
    height = max(1, round(image.height * width / image.width))
    return np.asarray(image.convert("L").resize((width, height), Image.BILINEAR))


def _small_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)


def _relative_motion(first: Image.Image, second: Image.Image, mask: np.ndarray, width: int) -> tuple[np.ndarray, float]:
    """(its displacement against the background's, in small-frame pixels; how much its parts move against
    each other: the mean distance of its pixels' flow from its median flow)."""
    a, b = _small_grey(first, width), _small_grey(second, width)
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(a, b, None)
    inside = _small_mask(mask, a.shape)
    if not inside.any():
        return np.zeros(2), 0.0
    around = cv2.dilate(inside.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    background = np.median(flow[~around], axis=0) if (~around).any() else np.zeros(2)
    own = flow[inside]
    centre = np.median(own, axis=0)
    parts = float(np.linalg.norm(own - centre, axis=1).mean())
    return centre - background, parts


def measure(frames: Iterable[tuple[int, Image.Image]], masks: Sequence[np.ndarray | None], settings: dict | None = None) -> ObjectFacts:
    """The facts of one object over a video: `masks[t]` its bool mask on frame t (None or empty: not seen),
    `frames` the video's (index, image) pairs in order (only the measured pairs' images are kept)."""
    settings = FACTS_SETTINGS | (settings or {})
    n = len(masks)
    visible = [t for t, m in enumerate(masks) if m is not None and m.any()]
    if not visible:
        return ObjectFacts(n, [], 0.0, "unseen", (0.5, 0.5), "nowhere", "still", 0.0, hidden=spans(range(n)))
    height, width = masks[visible[0]].shape
    diagonal = float(np.hypot(width, height))
    areas = np.array([masks[t].sum() / (width * height) for t in visible])
    centres = np.array([np.argwhere(masks[t]).mean(0)[::-1] / (width, height) for t in visible])
    area = float(areas.mean())
    size = next(word for limit, word in settings["sizes"] if area < limit)
    x, y = (float(v) for v in centres.mean(0))

    # consecutive visible frames, sampled evenly when there are many
    pairs = [(t, t + 1) for t in visible if t + 1 < n and masks[t + 1] is not None and masks[t + 1].any()]
    if len(pairs) > settings["max_flow_pairs"]:
        pairs = [pairs[i] for i in np.linspace(0, len(pairs) - 1, settings["max_flow_pairs"]).round().astype(int)]
    wanted = {t for pair in pairs for t in pair}
    images = {t: image for t, image in frames if t in wanted}
    to_diagonal = (width / settings["flow_width"]) / diagonal  # small-frame pixels → fraction of the diagonal
    steps, parts = [], []
    for t, u in pairs:
        shift, spread = _relative_motion(images[t], images[u], masks[t], settings["flow_width"])
        steps.append(shift * to_diagonal)
        parts.append(spread * to_diagonal)
    steps_array = np.array(steps).reshape(-1, 2)
    speeds = np.linalg.norm(steps_array, axis=1)
    speed = float(speeds.mean()) if len(speeds) else 0.0
    moving = settings["moving_speed"]
    if speed >= moving:
        motion = "moving"
    elif parts and float(np.mean(parts)) >= moving:
        motion = "moving in place"
    else:
        motion = "still"
    net = steps_array.sum(0) if len(steps_array) else np.zeros(2)
    # a direction only when the motion goes somewhere overall (not back and forth)
    direction = _direction(*net) if motion == "moving" and np.linalg.norm(net) >= 0.3 * speeds.sum() else None
    quarter = max(1, len(areas) // 4)
    growth = float(areas[-quarter:].mean() / max(areas[:quarter].mean(), 1e-9))
    depth = "closer" if growth >= settings["closer_ratio"] else "away" if growth <= 1 / settings["closer_ratio"] else None
    slow = [t for (t, _), s in zip(pairs, speeds) if s < moving]
    stops = [s for s in spans(slow) if s[1] - s[0] + 1 >= settings["stop_frames"]] if motion == "moving" else []
    seen = set(visible)
    hidden = spans(t for t in range(n) if t not in seen)
    return ObjectFacts(n, visible, area, size, (x, y), _position(x, y), motion, speed, direction, depth, stops, hidden)


def best_views(masks: Sequence[np.ndarray | None], count: int | None = None) -> list[int]:
    """Frames where the object is seen best: the track cut into `count` equal stretches of its visible frames,
    in each the frame where its mask is largest (a bigger view holds more of it), in time order."""
    count = count or FACTS_SETTINGS["views"]
    visible = [t for t, m in enumerate(masks) if m is not None and m.any()]
    if not visible:
        return []
    stretches = np.array_split(np.array(visible), min(count, len(visible)))
    return [int(max(stretch, key=lambda t: int(masks[t].sum()))) for stretch in stretches if len(stretch)]
