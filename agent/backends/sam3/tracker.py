"""The SAM 3 tracker: transformers' own video loop, detection and tracking of every instance in one pass.

One call is one `Sam3VideoInferenceSession` with the concept prompts' phrases as text prompts, run with
`propagate_in_video_iterator` (the pre-loaded-video loop; the streaming API, `model(frame=...)`, is a different
computation: it skips the hotstart removal) and `postprocess_outputs` on every output as it comes. That last
step is where the duplicates the hotstart removed are hidden, so nothing is read from the raw outputs.

The session's frames are pre-processed by the processor's own video processor, one frame when the model asks
for it (it asks for each frame once, in order), instead of the whole video up front: the same pixel values
(tests/test_sam3.py checks them against `init_video_session(video=...)`), without holding every frame.
The loop holds its outputs back for `hotstart_delay` frames; the decoded images wait with them. After each
output, `memory.bound_session` drops what SAM 3 can no longer read, so a session's memory is flat in video length.

SAM 3 numbers its objects from 0, with gaps where it removed one; ours are numbered in the order they are first
output, from 1, and `FrameMasks.found` says which concept prompt found each.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from agent.backends.sam3.clicks import ClickTracker, is_visual
from agent.backends.sam3.memory import MemoryWindow, bound_session
from agent.errors import UserError
from agent.grounder.protocol import ObjectPrompt
from agent.tracker.feature_cache import FeatureCache
from agent.tracker.protocol import FrameMasks
from agent.video.source import VideoSource


class ProcessedFrames(Mapping):
    """Frame index → the model's input for it (what `init_video_session(video=...)` stores), made on demand by the
    processor's video processor; the decoded image is kept until the tracker takes it for its output."""

    def __init__(self, video: VideoSource, video_processor, device: str, dtype: torch.dtype, start: int = 0):
        self.video = video
        self.video_processor = video_processor
        self.device = device
        self.dtype = dtype
        self.images: dict[int, Image.Image] = {}
        self._reader = video.frames(range(start, len(video)))  # in order: the loop asks for frame start, start + 1, …
        self._next = start
        self.latest = -1  # the last frame the model asked for: what it has run up to

    def __len__(self) -> int:
        return len(self.video)

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.video)))

    def _image(self, index: int) -> Image.Image:
        if index == self._next:
            self._next += 1
            return next(self._reader)[1]
        return self.video.frame(index)  # out of order (not what the loop does): read it on its own

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self.video):
            raise KeyError(index)
        self.latest = max(self.latest, index)
        image = self.images.get(index)
        if image is None:
            image = self.images[index] = self._image(index)
        pixels = self.video_processor(videos=[np.asarray(image)], device=self.device, return_tensors="pt").pixel_values_videos
        return pixels[0][0].to(self.device, dtype=self.dtype)

    def take_image(self, index: int) -> Image.Image:
        image = self.images.pop(index, None)
        return image if image is not None else self.video.frame(index)


class Sam3Tracker:
    thread_safe = True  # a call's state lives in its own session; the model keeps none between frames

    def __init__(self, model, processor, device: str = "cpu", dtype: torch.dtype = torch.float32, clicks: ClickTracker | None = None):
        self.model = model
        self.processor = processor
        self.device = device
        self.dtype = dtype
        self.clicks = clicks  # a person's clicks, boxes and masks (SAM 3's own tracker model, loaded when first used)

    def track(self, video: VideoSource, prompts: Sequence[ObjectPrompt], keyframes: Mapping[int, Image.Image], *,
              cache: FeatureCache | None = None, progress: Callable[[int, int], None] | None = None) -> Iterator[FrameMasks]:
        """Every instance of the concept prompts' phrases on every frame, and every object a person's clicks, boxes
        or masks give. `cache` is not used: SAM 3's sessions keep their own features (one frame's), and the detector
        runs on every frame anyway. `progress`: per frame of the click tracker's backward pass (the concept loop
        yields every frame as soon as it is done).

        Ids: an object a person prompted keeps its id; when that id is one of the concept prompts' (a correction of
        an instance found earlier: the instances are numbered the same way each time), the person's track replaces
        that instance's; the other instances are numbered 1, 2, … skipping the ids of objects a person added."""
        visual = [p for p in prompts if is_visual(p)]
        if any(p.embedding is not None and not is_visual(p) for p in prompts):
            raise UserError("the sam3 backend takes words, clicks, boxes and masks, not another grounder's [SEG] embeddings")
        if visual and self.clicks is None:
            raise UserError("this sam3 backend was loaded without its tracker model; load it with load_backend('sam3', …)")
        concept_ids = {p.object_id for p in prompts if p.concept and not is_visual(p)}
        concepts = [p for p in prompts if p.concept and p.label and not is_visual(p)]
        if not visual:
            return self._frames(video, concepts)
        added = {p.object_id for p in visual} - concept_ids
        return self._with_clicks(video, concepts, visual, added, progress)

    def _with_clicks(self, video: VideoSource, concepts: Sequence[ObjectPrompt], visual: Sequence[ObjectPrompt],
                     added: set[int], progress: Callable[[int, int], None] | None = None) -> Iterator[FrameMasks]:
        """The concept loop and the click tracker side by side, frame by frame."""
        replaced = {p.object_id for p in visual} - added
        words = self._frames(video, concepts, skip=added) if concepts else None
        for clicked in self.clicks.track(video, visual, progress):
            frame = next(words) if words is not None else FrameMasks(clicked.frame_index, image=clicked.image)
            for object_id in replaced:  # the instance a person corrected: the person's track stands for it
                frame.masks.pop(object_id, None)
                frame.scores.pop(object_id, None)
            frame.masks |= clicked.masks
            frame.scores |= clicked.scores
            frame.image = frame.image or clicked.image
            yield frame

    def session(self, video: VideoSource, phrases: Sequence[str]):
        """A session over `video` with these text prompts, its frames pre-processed on demand."""
        session = self.processor.init_video_session(inference_device=self.device, dtype=self.dtype)
        session.processed_frames = ProcessedFrames(video, self.processor.video_processor, self.device, self.dtype)
        session.video_width, session.video_height = video.size
        for phrase in dict.fromkeys(phrases):
            session = self.processor.add_text_prompt(session, phrase)
        return session

    def propagate(self, session) -> Iterator[tuple[int, Image.Image, dict]]:
        """transformers' loop over a session from `session()`, its memory bounded: per frame, in order, the index,
        the decoded image and `postprocess_outputs`."""
        frames = session.processed_frames
        window = MemoryWindow.of(self.model.config, len(frames))
        for output in self.model.propagate_in_video_iterator(session):
            post = self.processor.postprocess_outputs(session, output)
            bound_session(session, window, frames.latest)
            index = int(output.frame_idx)
            yield index, frames.take_image(index), post

    def _frames(self, video: VideoSource, prompts: Sequence[ObjectPrompt], skip: set[int] = frozenset()) -> Iterator[FrameMasks]:
        if not prompts:
            for index, image in video.frames():
                yield FrameMasks(index, image=image)
            return
        owner = {}  # phrase → the first concept prompt with it
        for p in prompts:
            owner.setdefault(p.label, p.object_id)
        session = self.session(video, list(owner))
        ours: dict[int, int] = {}  # SAM 3's object id → ours
        for index, image, post in self.propagate(session):
            prompt_of = {sam_id: owner[phrase] for phrase, ids in post["prompt_to_obj_ids"].items() for sam_id in ids}
            masks = post["masks"].cpu().numpy()
            result = FrameMasks(index, image=image)
            for k, sam_id in enumerate(post["object_ids"].tolist()):
                if sam_id not in ours:
                    ours[sam_id] = next(i for i in itertools.count(max(ours.values(), default=0) + 1) if i not in skip)
                    result.found[ours[sam_id]] = prompt_of[sam_id]
                object_id = ours[sam_id]
                result.masks[object_id] = masks[k]  # the video's size: the session knows it
                result.scores[object_id] = float(post["scores"][k])  # the detection score the object was made with
            yield result
