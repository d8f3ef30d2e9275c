"""The tracker protocol: video + prompts → masks per frame per object, streamed in frame order."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from PIL import Image

from agent.grounder.protocol import ObjectPrompt
from agent.tracker.feature_cache import FeatureCache
from agent.video.source import VideoSource


@dataclass
class FrameMasks:
    """Masks of one frame: object id → bool array of the frame's size (h, w)."""

    frame_index: int
    masks: dict[int, np.ndarray] = field(default_factory=dict)
    scores: dict[int, float] = field(default_factory=dict)  # object presence, 0..1
    image: Image.Image | None = None  # the decoded frame, passed on so writers need not decode it again
    # objects first output on this frame that the tracker found itself for a concept prompt: their id → that
    # prompt's object id (every instance of a phrase is one more object; see ObjectPrompt.concept)
    found: dict[int, int] = field(default_factory=dict)


class Tracker(Protocol):
    """A loaded model. Whatever one call changes lives in that call; a tracker whose calls may run at once
    from several threads says so with a class attribute `thread_safe = True` (the server serialises the others)."""

    def track(
        self,
        video: VideoSource,
        prompts: Sequence[ObjectPrompt],
        keyframes: Mapping[int, Image.Image],
        *,
        cache: FeatureCache | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Iterator[FrameMasks]:
        """Yield one `FrameMasks` per video frame, in order (`keyframes` are already decoded). `cache`: the
        session's image features of frames seen before, by their index in its video (used and filled).
        `progress(done, total)`: called for each frame of work done before frames can be yielded (tracking
        backwards from a prompt after frame 0), so a long pass shows and can be stopped (it may raise)."""
        ...
