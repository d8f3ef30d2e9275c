"""A person's clicks, boxes and masks on SAM 3: transformers' `Sam3TrackerVideoModel`, SAM 2's video API on SAM 3's
weights (loaded from the same `sam3_video` checkpoint: transformers maps the detector's vision backbone and the
tracker's weights onto it), with its own `Sam3TrackerVideoProcessor`.

One call, in frame order: each prompt is added with `add_inputs_to_inference_session` and run on its frame
(`model(inference_session, frame_idx)`, its conditioning output), one after the other, then `propagate_in_video_iterator` from the
earliest prompted frame to the end. Frames before it are tracked first, backwards from it, in a session of their
own holding the same prompts, so the forward pass is exactly transformers' forward pass (its memory holds no
backward outputs; the stock order, forward then backward in one session, would let the backward pass read the
forward's memory instead — our SAM 2 tracker does the same). The forward session's memory is bounded as the
concept loop's is (`memory.bound_session`).

transformers takes a mask, or points and a box, not both: a mask with clicks (a correction of the current mask)
becomes the clicks and the mask's box.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from agent.backends.sam3.memory import MemoryWindow, bound_session
from agent.grounder.protocol import ObjectPrompt
from agent.video.source import VideoSource


def is_visual(prompt: ObjectPrompt) -> bool:
    """A prompt this tracker takes: clicks, a box or a mask (a concept prompt with clicks is a correction)."""
    return bool(prompt.points) or prompt.box is not None or prompt.mask is not None


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    ys, xs = np.nonzero(mask)
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)) if len(xs) else None


@dataclass
class ClickFrame:
    frame_index: int
    masks: dict[int, np.ndarray]  # object id → bool (h, w)
    scores: dict[int, float]  # object id → presence, 0..1
    image: Image.Image | None = None


class ClickTracker:
    """Loaded on first use (most runs of the sam3 backend are words only): the same folder, device and dtype."""

    def __init__(self, folder, device: str = "cpu", dtype: torch.dtype = torch.float32):
        self.folder, self.device, self.dtype = folder, device, dtype
        self._model = self._processor = None

    def load(self):
        if self._model is None:
            from transformers import Sam3TrackerVideoModel, Sam3TrackerVideoProcessor

            from agent.backends.hub import quiet_transformers

            with quiet_transformers():
                model = Sam3TrackerVideoModel.from_pretrained(self.folder, dtype=self.dtype, use_safetensors=True, trust_remote_code=False)
                self._processor = Sam3TrackerVideoProcessor.from_pretrained(self.folder, trust_remote_code=False)
            self._model = model.to(self.device).eval()
        return self._model, self._processor

    def _session(self, video: VideoSource, prompts: Sequence[ObjectPrompt], start: int = 0):
        from agent.backends.sam3.tracker import ProcessedFrames

        model, processor = self.load()
        session = processor.init_video_session(inference_device=self.device, dtype=self.dtype)
        session.processed_frames = ProcessedFrames(video, processor.video_processor, self.device, self.dtype, start=start)
        session.video_width, session.video_height = video.size
        for prompt in sorted(prompts, key=lambda p: p.frame_index):
            # each prompt is run on its frame when added (the session marks only the latest object as new)
            self._add(processor, session, prompt)
            model(inference_session=session, frame_idx=prompt.frame_index)
        return session

    @staticmethod
    def _add(processor, session, prompt: ObjectPrompt) -> None:
        options = {}
        if prompt.points:
            options["input_points"] = [[[[float(x), float(y)] for x, y in prompt.points]]]
            options["input_labels"] = [[[int(label) for label in (prompt.point_labels or [1] * len(prompt.points))]]]
            box = prompt.box or (mask_box(np.asarray(prompt.mask, bool)) if prompt.mask is not None else None)
            if box is not None:
                options["input_boxes"] = [[[float(v) for v in box]]]
        elif prompt.box is not None:
            options["input_boxes"] = [[[float(v) for v in prompt.box]]]
        else:
            options["input_masks"] = np.asarray(prompt.mask, bool)
        processor.add_inputs_to_inference_session(session, frame_idx=prompt.frame_index, obj_ids=prompt.object_id, **options)

    def _frame(self, processor, session, output) -> ClickFrame:
        height, width = session.video_height, session.video_width
        masks = processor.post_process_masks([output.pred_masks], original_sizes=[[height, width]], binarize=True)[0]
        scores = torch.sigmoid(output.object_score_logits.float().reshape(-1)).tolist()
        ids = list(output.object_ids if output.object_ids is not None else session.obj_ids)
        return ClickFrame(int(output.frame_idx), {i: masks[k, 0].cpu().numpy() for k, i in enumerate(ids)},
                          {i: float(scores[k]) for k, i in enumerate(ids)})

    @torch.inference_mode()
    def track(self, video: VideoSource, prompts: Sequence[ObjectPrompt],
              progress: Callable[[int, int], None] | None = None) -> Iterator[ClickFrame]:
        """Every prompted object on every frame of `video`, in frame order (empty before transformers outputs it).
        `progress(done, total)`: called per frame of the backward pass from a first prompt after frame 0."""
        model, processor = self.load()
        first = min(p.frame_index for p in prompts)
        width, height = video.size
        empty = {p.object_id: np.zeros((height, width), bool) for p in prompts}
        before: dict[int, ClickFrame] = {}
        if first > 0:
            backward = self._session(video, prompts, start=first)
            for output in model.propagate_in_video_iterator(backward, start_frame_idx=first, reverse=True):
                backward.processed_frames.take_image(int(output.frame_idx))  # (read again going forward)
                if output.frame_idx < first:
                    frame = self._frame(processor, backward, output)
                    frame.masks = {i: np.packbits(m) for i, m in frame.masks.items()}  # kept until the forward pass
                    before[frame.frame_index] = frame
                    if progress is not None:
                        progress(first - frame.frame_index, first)
            del backward
        for t in range(first):
            frame = before.pop(t)
            frame.image = video.frame(t)
            frame.masks = {i: np.unpackbits(m, count=height * width).reshape(height, width).astype(bool) for i, m in frame.masks.items()}
            yield frame
        session = self._session(video, prompts, start=first)
        window = _window(model.config, len(video))
        for output in model.propagate_in_video_iterator(session, start_frame_idx=first):
            t = int(output.frame_idx)
            bound_session(session, window, t)  # (no delay here: the frame output is the frame run)
            frame = self._frame(processor, session, output)
            frame.masks, frame.image = empty | frame.masks, session.processed_frames.take_image(t)
            yield frame


def _window(config, num_frames: int) -> MemoryWindow:
    """`MemoryWindow.of` for a tracker config (no detector, so no hotstart)."""
    pointers = min(num_frames, config.max_object_pointers_in_encoder)
    return MemoryWindow(max(config.num_maskmem - 1, 0), max(pointers - 1, 0), config.max_cond_frame_num, 0)
