"""A SAM 3 session's memory, bounded by what the model can still read: flat in video length.

transformers' SAM 3 sessions keep every frame's tracker outputs and bookkeeping for the whole video (the growth
sam3 issues #169/#305/#481 report). Going forward, frame by frame, the next frame's tracker reads only:
- spatial memory (`maskmem_features`, `maskmem_pos_enc`) of the `num_maskmem - 1` frames before it, and of the
  `max_cond_frame_num` conditioning frames closest to it, which going forward are the latest ones;
- object pointers of the `max_object_pointers_in_encoder - 1` frames before it, and of *every* conditioning frame
  at or before it (transformers' `_get_object_pointers` reads them all, not only the selected ones);
- of the latest frame, everything (a frame with a conditioning output is not run again, its output is reused);
and the detector's hotstart heuristics read per-frame bookkeeping of the current frame and, per object, lists of
frames only while that object is within `hotstart_delay` frames of its first appearance.

`bound_session` drops the rest after each frame. A conditioning frame SAM 3 no longer reads spatially keeps its
object pointer (one vector per object) and its place in the dict: the pointers are attended to, and the dict's
order decides the order in which memories are concatenated, so keeping both keeps the outputs bit for bit those
of the unbounded loop (tests/test_sam3.py compares them). Those pointers are the only part that still grows, by
one vector per reconditioned object every `recondition_every_nth_frame` frames at most: it is what SAM 3 attends to.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

MEMORY_KEYS = ("maskmem_features", "maskmem_pos_enc", "object_pointer")  # what a later frame reads
POINTER_KEYS = ("object_pointer",)


@dataclass(frozen=True)
class MemoryWindow:
    """How far back SAM 3's tracker reads, from its config (the tracker's, in a `sam3_video` config)."""

    spatial_frames: int  # num_maskmem - 1: recent frames whose spatial memory is read
    pointer_frames: int  # max_object_pointers_in_encoder - 1 (at most the video's length - 1)
    cond_frames: int  # max_cond_frame_num: conditioning frames whose spatial memory is read (-1: all)
    hotstart_delay: int

    @classmethod
    def of(cls, config, num_frames: int) -> MemoryWindow:
        tracker = config.tracker_config
        pointers = min(num_frames, tracker.max_object_pointers_in_encoder)  # as _get_object_pointers counts them
        return cls(max(tracker.num_maskmem - 1, 0), max(pointers - 1, 0), tracker.max_cond_frame_num,
                   getattr(config, "hotstart_delay", 0))


def _keep_only(entry: dict, keys: tuple[str, ...]) -> None:
    for key in [k for k in entry if k not in keys]:
        del entry[key]


def bound_session(session, window: MemoryWindow, latest: int) -> None:
    """Drop from `session` what no frame after `latest` (the last frame the model has run) reads. Forward only."""
    upcoming = latest + 1
    spatial_from = upcoming - window.spatial_frames
    pointer_from = upcoming - window.pointer_frames
    for outputs in session.output_dict_per_obj.values():
        recent = outputs["non_cond_frame_outputs"]
        for t in [t for t in recent if t < latest]:
            if t >= spatial_from:
                _keep_only(recent[t], MEMORY_KEYS)
            elif t >= pointer_from:
                _keep_only(recent[t], POINTER_KEYS)
            else:
                del recent[t]
        conditioning = outputs["cond_frame_outputs"]
        # going forward the closest conditioning frames are the latest; 0 or -1 (all, or transformers' odd
        # selection for 0) keeps them all
        read = set(conditioning) if window.cond_frames <= 0 else set(sorted(conditioning)[-window.cond_frames:])
        for t, entry in conditioning.items():  # never deleted, never reordered: see the module's docstring
            if t < latest:
                _keep_only(entry, MEMORY_KEYS if t in read or t >= spatial_from else POINTER_KEYS)
    for tracked in session.frames_tracked_per_obj.values():
        for t in [t for t in tracked if t < latest]:
            del tracked[t]
    _bound_hotstart(session, window, latest)


def _bound_hotstart(session, window: MemoryWindow, latest: int) -> None:
    """Per-frame bookkeeping of the detector's side (`Sam3VideoInferenceSession` only)."""
    if not hasattr(session, "obj_first_frame_idx"):
        return
    for per_frame in (session.obj_id_to_tracker_score_frame_wise, session.suppressed_obj_ids):
        for t in [t for t in per_frame if t < latest]:
            del per_frame[t]
    # an object first seen at or before this frame is out of the hotstart window for every frame to come
    settled_by = latest + 1 - window.hotstart_delay
    first = session.obj_first_frame_idx

    def settled(obj_id) -> bool:
        return obj_id in first and first[obj_id] <= settled_by

    for obj_id, frames in session.unmatched_frame_inds.items():
        if settled(obj_id):
            frames.clear()  # the key stays: the keep-alive suppression loops over these objects
    for pair in [pair for pair in session.overlap_pair_to_frame_inds if settled(pair[1])]:
        del session.overlap_pair_to_frame_inds[pair]
    _forget_removed(session, window, latest)


def _forget_removed(session, window: MemoryWindow, latest: int) -> None:
    """Forget the objects the hotstart removed once no output still to come can show them. Without this every
    false detection the hotstart removes leaves records for the rest of the video (several per frame for a
    detector that keeps proposing), and the loop deep-copies them on every frame.

    Removed objects are skipped by every heuristic (their keys are only read to be skipped) and are gone from the
    tracker, so only `postprocess_outputs` still needs their ids, in `hotstart_removed_obj_ids`, to hide them in
    outputs made before the removal. An object is removed at the latest `hotstart_delay - 1` frames after its first
    frame, and is in no output after that; the loop has yielded the output of every frame up to
    `latest - hotstart_delay + 1` by now. So an object first seen `2 * hotstart_delay` frames ago is in none of the
    outputs still to come."""
    first = session.obj_first_frame_idx
    gone = [obj_id for obj_id in session.removed_obj_ids if first.get(obj_id, latest) + 2 * window.hotstart_delay <= latest]
    for obj_id in gone:
        for record in (session.unmatched_frame_inds, session.trk_keep_alive, session.obj_id_to_score, first):
            record.pop(obj_id, None)
        session.removed_obj_ids.discard(obj_id)
        session.hotstart_removed_obj_ids.discard(obj_id)


@dataclass(frozen=True)
class Held:
    """Everything a session holds, found by walking its attributes: what grows if anything in it grows."""

    items: int  # entries of every dict, list, tuple and set in it, at any depth (frame-keyed records and all)
    bytes: int  # of every distinct tensor storage (a view into a batch counts the batch, once) and decoded image
    stored_frames: int  # the most frames any one object has tracker outputs kept for
    pointer_only_frames: int  # conditioning frames kept for their object pointer alone (the part that may grow)


def held(session) -> Held:
    """What `session` holds now. Our on-demand frames count as the images they keep (walking the mapping would
    decode the video); transformers' pre-loaded frames count in full."""
    seen, storages = set(), set()
    items = size = 0
    frames = session.processed_frames
    stack = [getattr(frames, "images", frames)] + [v for k, v in vars(session).items() if k != "processed_frames"]
    while stack:
        value = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, torch.Tensor):
            storage = value.untyped_storage()
            if storage.data_ptr() not in storages:
                storages.add(storage.data_ptr())
                size += storage.nbytes()
        elif isinstance(value, Image.Image):
            size += value.width * value.height * len(value.getbands())
        elif isinstance(value, dict):
            items += len(value)
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, (list, tuple, set, frozenset)):
            items += len(value)
            stack.extend(value)
        elif type(value).__module__.startswith("transformers") and hasattr(value, "__dict__"):
            stack.extend(vars(value).values())  # the session's feature cache
    outputs = list(session.output_dict_per_obj.values())
    stored = max((len(o["cond_frame_outputs"]) + len(o["non_cond_frame_outputs"]) for o in outputs), default=0)
    pointer_only = sum(set(entry) <= set(POINTER_KEYS) for o in outputs for entry in o["cond_frame_outputs"].values())
    return Held(items, size, stored, pointer_only)
