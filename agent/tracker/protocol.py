"""The tracker protocol: video + prompts → masks per frame per object, streamed in frame order."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from PIL import Image

from agent.grounder.protocol import ObjectPrompt
from agent.video.source import VideoSource


@dataclass
class FrameMasks:
    """Masks of one frame: object id → bool array of the frame's size (h, w)."""

    frame_index: int
    masks: dict[int, np.ndarray] = field(default_factory=dict)
    scores: dict[int, float] = field(default_factory=dict)  # object presence, 0..1
    image: Image.Image | None = None  # the decoded frame, passed on so writers need not decode it again


class Tracker(Protocol):
    def track(
        self,
        video: VideoSource,
        prompts: Sequence[ObjectPrompt],
        keyframes: Mapping[int, Image.Image],
    ) -> Iterator[FrameMasks]:
        """Yield one `FrameMasks` per video frame, in order (`keyframes` are already decoded)."""
        ...
