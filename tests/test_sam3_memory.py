"""The sam3 tracker's bounded session (agent/backends/sam3/memory.py) against transformers' own unbounded loop
(`pytest -k sam3`): the same outputs while the bound drops what SAM 3 can no longer read, and a session that stays
the same size from 300 to 1,000 frames while transformers' grows with every frame.

The tiny random SAM 3 video model is test_sam3's. Its detector proposes a new object on most frames and the
hotstart removes it a few frames later: that churn is what the per-object bookkeeping has to survive.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from test_sam3 import PHRASE, tiny_config, tiny_model, tiny_processor

from agent.backends.sam3.memory import MemoryWindow, held
from agent.backends.sam3.tracker import Sam3Tracker
from agent.video import VideoSource


class BouncingSquares(Sequence):
    """Frames made when asked for (nothing is held): a red square and a blue one bouncing sideways, 96 × 72."""

    def __init__(self, length: int):
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < self.length:
            raise IndexError(index)
        frame = np.full((72, 96, 3), 80, np.uint8)
        x = abs(index % 40 - 20) * 3
        frame[10:34, 5 + x:29 + x] = (220, 30, 30)
        frame[40:60, 60 - x // 2:80 - x // 2] = (30, 60, 220)
        return frame


def reconditioning_model():
    """test_sam3's tiny model, reconditioning every 3rd frame (thresholds a random model reaches), so conditioning
    frames pile up past `max_cond_frame_num` and the bound has to keep some for their object pointers alone."""
    from transformers import Sam3VideoModel

    config = tiny_config()
    config.recondition_every_nth_frame, config.high_conf_thresh, config.high_iou_thresh = 3, 0.3, 0.3
    torch.manual_seed(0)
    model = Sam3VideoModel(config).eval()
    with torch.no_grad():  # as tiny_model steers it: "there is one", and tracks that last
        model.detector_model.detr_decoder.presence_head.layer3.bias.fill_(10.0)
        model.tracker_model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(3.0)
    return model


def unbounded_outputs(model, session):
    """transformers' loop as documented, nothing dropped: per yielded frame, its postprocessed output."""
    processor = tiny_processor()
    for output in model.propagate_in_video_iterator(session):
        yield int(output.frame_idx), processor.postprocess_outputs(session, output)


def test_sam3_bounded_session_matches_transformers_loop_frame_by_frame():
    frames = 48  # three times the object-pointer window: the bound drops frames, conditioning ones included
    model = reconditioning_model()
    video = BouncingSquares(frames)
    processor = tiny_processor()
    reference_session = processor.add_text_prompt(
        processor.init_video_session(video=[video[t] for t in range(frames)], inference_device="cpu"), PHRASE)
    reference = list(unbounded_outputs(model, reference_session))

    tracker = Sam3Tracker(model, tiny_processor())
    session = tracker.session(VideoSource.open(video), [PHRASE])
    window = MemoryWindow.of(model.config, frames)
    ours, stored = [], []
    for index, image, post in tracker.propagate(session):
        ours.append((index, post))
        stored.append(held(session).stored_frames)
        assert np.array_equal(np.asarray(image), video[index])

    assert [t for t, _ in ours] == [t for t, _ in reference] == list(range(frames))
    for (t, got), (_, want) in zip(ours, reference):
        assert torch.equal(got["object_ids"], want["object_ids"]), t
        assert torch.equal(got["masks"], want["masks"]), t
        assert torch.equal(got["scores"], want["scores"]), t
        assert torch.equal(got["boxes"], want["boxes"]), t
        assert got["prompt_to_obj_ids"] == want["prompt_to_obj_ids"], t
    # the comparison is not trivial: objects on every frame, and some removed by the hotstart on the way
    assert all(len(post["object_ids"]) for _, post in reference)
    assert reference_session.hotstart_removed_obj_ids

    # and the bound did drop things: transformers keeps every frame of a long-lived object, ours a window of them
    # plus the conditioning frames kept for their object pointer alone
    theirs = held(reference_session)
    assert theirs.stored_frames == frames and theirs.pointer_only_frames == 0
    end = held(session)
    assert end.pointer_only_frames > 0  # reconditioned more often than max_cond_frame_num: pointers kept, rest dropped
    assert max(stored) <= window.pointer_frames + 1 + end.pointer_only_frames < frames
    reconditioned = max(len(o["cond_frame_outputs"]) for o in reference_session.output_dict_per_obj.values())
    assert reconditioned > window.cond_frames


def test_sam3_session_memory_is_flat_from_300_to_1000_frames():
    """Ours: one 1,000-frame video through the tracker's own propagate (the path `track` takes), frames made on
    the fly. The yardstick: transformers' loop on the same session type and lazy frames, nothing dropped, 300
    frames. What a session holds is counted by walking it (memory.held): every container entry and tensor byte."""
    model = tiny_model(10.0)
    tracker = Sam3Tracker(model, tiny_processor())
    session = tracker.session(VideoSource.open(BouncingSquares(1000)), [PHRASE])
    ours = [held(session) for _ in tracker.propagate(session)]
    assert len(ours) == 1000

    reference = tracker.session(VideoSource.open(BouncingSquares(300)), [PHRASE])
    theirs = []
    for index, _ in unbounded_outputs(model, reference):
        theirs.append(held(reference))
        reference.processed_frames.take_image(index)  # as ours does: the decoded image goes with its output
    assert len(theirs) == 300

    # what a session holds changes with the objects alive on a frame (2 or 3 here), so compare the largest over
    # equal spans: the first 300 frames against frames 700-1,000 (the end flush is left out of both)
    def peak(rows, start, stop, field):
        return max(getattr(r, field) for r in rows[start:stop])

    for field in ("items", "bytes"):
        early, late = peak(ours, 0, 300, field), peak(ours, 700, 990, field)
        per_frame_theirs = (getattr(theirs[290], field) - getattr(theirs[90], field)) / 200
        assert per_frame_theirs > 0, field  # the yardstick grows with every frame
        # ours does not grow from the first 300 frames to the last 300 by as much as theirs grows in one frame
        assert late - early < per_frame_theirs, (field, early, late, per_frame_theirs)
        assert getattr(theirs[290], field) > 3 * early, field  # and theirs is far past ours at 300 frames
    assert max(r.stored_frames for r in ours) <= MemoryWindow.of(model.config, 1000).pointer_frames + 1
