"""One tracker's keyframe masks as another tracker's mask prompts: the Sa2VA-i way of combining a grounder with a
stronger tracker (`rvos segment … --backend sa2va --tracker sam3`: Sa2VA's `[SEG]` masks, SAM 3's tracker).

The seeds are the masks the grounder's own tracker makes on the prompted keyframes themselves, where each is a
conditioning frame decoded without memory (Sa2VA's keyframe masks; a tracker with its own keyframe decoder,
Sa2VA-i's, gives them through `keyframe_masks`). The propagator never sees an embedding: it tracks those masks
(and a person's prompts, as they are) through the whole video with its own memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace

import numpy as np
from PIL import Image

from agent.grounder.protocol import ObjectPrompt
from agent.tracker.feature_cache import FeatureCache
from agent.tracker.protocol import FrameMasks, Tracker
from agent.video.source import VideoSource


class MaskSeededTracker:
    def __init__(self, seeds: Tracker, propagator: Tracker):
        self.seeds = seeds  # decodes the embedding prompts on their keyframes
        self.propagator = propagator  # tracks masks, clicks and boxes through the video
        self.thread_safe = bool(getattr(seeds, "thread_safe", False) and getattr(propagator, "thread_safe", False))

    def keyframe_masks(self, video: VideoSource, prompts: Sequence[ObjectPrompt], keyframes: Mapping[int, Image.Image]) -> dict:
        """(object id, frame) → bool mask at frame size, for every embedding prompt."""
        embedded = [p for p in prompts if p.embedding is not None]
        if not embedded:
            return {}
        frames = sorted({p.frame_index for p in embedded})
        images = {t: keyframes[t] if t in keyframes else video.frame(t) for t in frames}
        own = getattr(self.seeds, "keyframe_masks", None)
        if own is not None:  # a decoder of its own for keyframes (Sa2VA-i's)
            return own(images, embedded, video.size)
        # the keyframes as a video of their own, each prompted frame a conditioning frame (decoded without memory)
        position = {t: k for k, t in enumerate(frames)}
        seed_video = VideoSource.open([images[t] for t in frames])
        wanted = {(p.object_id, position[p.frame_index]) for p in embedded}
        masks = {}
        for frame in self.seeds.track(seed_video, [p.at(position[p.frame_index]) for p in embedded],
                                      {k: images[t] for t, k in position.items()}):
            for object_id, mask in frame.masks.items():
                if (object_id, frame.frame_index) in wanted:
                    masks[(object_id, frames[frame.frame_index])] = np.asarray(mask, bool)
        return masks

    def track(self, video: VideoSource, prompts: Sequence[ObjectPrompt], keyframes: Mapping[int, Image.Image], *,
              cache: FeatureCache | None = None, progress: Callable[[int, int], None] | None = None) -> Iterator[FrameMasks]:
        seeds = self.keyframe_masks(video, prompts, keyframes)
        converted = []
        for prompt in prompts:
            mask = seeds.get((prompt.object_id, prompt.frame_index))
            if mask is None or prompt.embedding is None:
                converted.append(prompt)
            else:  # with clicks, the clicks refine the seed mask (as a person's correction of a mask)
                converted.append(replace(prompt, embedding=None, mask=prompt.mask if prompt.mask is not None else mask))
        return self.propagator.track(video, converted, keyframes, progress=progress)
