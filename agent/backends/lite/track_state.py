"""What one lite `track` call changes: each object it follows (`TrackedObject`) and the call's own state
(`LiteTrackState`: counters, the frame's detections, the optical-flow computer, the session's feature cache),
kept apart from `LiteTracker`, which holds only models and parameters, so one tracker runs several calls at once."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from agent.backends.lite.identity import Identity
from agent.backends.lite.segmenter import Embedding, MiniSam
from agent.grounder.protocol import ObjectPrompt
from agent.tracker.feature_cache import FeatureCache


@dataclass
class TrackedObject:
    """One object as a `track` call follows it: its prompts, current mask and what decides its refreshes."""

    object_id: int
    boxes: dict[int, tuple]  # grounder's boxes by frame
    given: dict[int, ObjectPrompt] = field(default_factory=dict)  # a person's prompts by frame
    mask: np.ndarray | None = None
    appearance: np.ndarray | None = None
    class_index: int | None = None
    area: float = 0.0  # recent size (a running average over refreshes)
    refreshed_area: float = 0.0  # size at the last refresh
    motion: float = 0.0  # movement since the last refresh, relative to the object's size
    since_refresh: int = 0
    lost_since: int | None = None  # frame where it was lost (left the frame, hidden)
    negatives: list[tuple[float, float]] = field(default_factory=list)  # a person's "not this" clicks, moved with the flow
    box: tuple | None = None  # the last refreshed mask's box, moved by the mask's median flow: it does not grow with the flow
    identity: Identity | None = None  # what the classifier named it on its first mask
    checked: int = 0  # frame of the last identity check

    def touches_negative(self) -> bool:
        return self.mask is not None and any(self.mask[int(y), int(x)] for x, y in self.negatives)

    @property
    def start(self) -> int:
        return min([*self.boxes, *self.given])


class LiteTrackState:
    """What one `track` call changes, made by `LiteTracker.init_state`: counters (`stats`), the current
    frame's detections (shared by its objects), the optical-flow computer (OpenCV's keeps buffers: one per
    call) and the pixel grid, and the session's `FeatureCache` if one was given: the frames' minisam
    features and detections, by the frame's index in the session's video."""

    def __init__(self, cache: FeatureCache | None = None):
        self.cache = cache
        self.stats = {"encoder_frames": 0, "frames": 0, "redetections": 0, "recognitions": 0, "cached_frames": 0}
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)  # no state kept between frames' calls
        self.grid: tuple[np.ndarray, np.ndarray] | None = None  # pixel coordinates, built once per frame size
        self.detected: tuple[Image.Image, list] | None = None  # the current frame's detections, shared by its objects
        self.frame: tuple[Image.Image, int] | None = None  # the frame being tracked and its index in the session's video
        self._asked: set[str] = set()  # the kinds of feature the cache was asked for on the current frame

    def at(self, image: Image.Image, source_index: int) -> None:
        self.frame = (image, source_index)
        self._asked.clear()

    def feature(self, kind: str, image: Image.Image, compute, nbytes: int | None = None):
        """A feature of the current frame (`kind`: "minisam", "detections"): from the session's cache when it
        has it, else computed (and kept there); another image than the current frame's is computed as it is.
        `cached_frames` counts the frames whose minisam features the cache had before this call needed them."""
        if self.cache is None or self.frame is None or self.frame[0] is not image:
            return compute()
        key = (kind, self.frame[1], image.size)
        first = kind not in self._asked
        self._asked.add(kind)
        value = self.cache.get(key)
        if value is None:
            value = compute()
            self.cache.put(key, value, nbytes)  # None: measured from its arrays
        elif kind == "minisam" and first:
            self.stats["cached_frames"] += 1
        return value

    def embed(self, segmenter: MiniSam, image: Image.Image) -> Embedding:
        return self.feature("minisam", image, lambda: segmenter.embed(image))
