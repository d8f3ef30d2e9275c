"""The objects of a session: what each one is, its prompts (the grounder's and a person's, kept together
per frame) and its mask on every frame, held as RLE."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from agent.errors import UserError
from agent.grounder.protocol import ObjectPrompt
from agent.masks import decode_rle, mask_iou


@dataclass
class SessionObject:
    object_id: int
    description: str
    prompts: dict[int, ObjectPrompt] = field(default_factory=dict)  # frame → everything said about it there
    corrected: bool = False  # a person prompted it: a later grounding does not overwrite its masks
    named: bool = False  # a person named it: a later grounding keeps the name
    asked: str = ""  # the words that found it (a later question may name it by them: "what is the swan doing?")

    @property
    def label(self) -> str | None:
        return next((p.label for p in self.prompts.values() if p.label), None)


class ObjectStore:
    def __init__(self, num_frames: int):
        self.objects: dict[int, SessionObject] = {}
        self.frames: list[dict[int, dict]] = [{} for _ in range(num_frames)]  # per frame: object id → RLE

    def get(self, object_id: int) -> SessionObject:
        if object_id not in self.objects:
            known = ", ".join(str(i) for i in sorted(self.objects)) or "none yet"
            raise UserError(f"there is no object {object_id} in this session (objects: {known}); leave object_id out to add a new one")
        return self.objects[object_id]

    def next_id(self) -> int:
        return max(self.objects, default=0) + 1

    def mask(self, object_id: int, frame: int) -> np.ndarray | None:
        rle = self.frames[frame].get(object_id)
        return None if rle is None else decode_rle(rle)

    def keyframe_masks(self, keyframes) -> dict[int, dict[int, dict]]:
        """Object id → keyframe → RLE (what a new grounding is matched against)."""
        return {i: {t: self.frames[t][i] for t in keyframes if i in self.frames[t]} for i in self.objects}

    def remove(self, object_id: int) -> SessionObject:
        removed = self.get(object_id)
        del self.objects[object_id]
        for frame in self.frames:
            frame.pop(object_id, None)
        return removed

    def window(self, object_id: int, frame: int) -> tuple[range, range]:
        """Frames a new prompt on `frame` may change, both ranges starting at `frame`: backwards and
        forwards until the object's nearest other prompted frame (or the video's ends)."""
        others = [t for t in self.get(object_id).prompts if t != frame]
        before = max((t for t in others if t < frame), default=-1)
        after = min((t for t in others if t > frame), default=len(self.frames))
        return range(frame, before, -1), range(frame, after)

    def stitch(self, object_id: int, frames: range, new: list[dict]) -> int:
        """Frames between an earlier prompt and a new one (`frames`, going back from the new one, with
        their re-tracked masks `new`) have two tracks: the one from the earlier prompt and the one back from
        the new. Switch from one to the other where they agree best (highest IoU; the nearer frame on a
        tie, halfway when they never overlap). Returns the earliest frame that takes the new track."""
        agreement = []
        for t, rle in zip(frames, new):
            old = self.mask(object_id, t)
            agreement.append(0.0 if old is None else mask_iou(old, decode_rle(rle)))
        switch = int(np.argmax(agreement)) if max(agreement, default=0.0) > 0 else len(new) // 2
        for t, rle in zip(frames[: switch + 1], new):
            self.frames[t][object_id] = rle
        return frames[switch] if new else frames.start + 1

    def copy(self) -> ObjectStore:
        """A copy to go back to when a change does not finish (RLE is shared: it is never changed in place)."""
        other = ObjectStore(0)
        other.objects = {i: replace(o, prompts=dict(o.prompts)) for i, o in self.objects.items()}
        other.frames = [dict(frame) for frame in self.frames]
        return other

    def snapshot(self, object_ids) -> list[dict[int, dict]]:
        """Per frame: these objects' RLE (the dicts are shared, not copied: RLE is never changed in place)."""
        wanted = set(object_ids)
        return [{i: rle for i, rle in frame.items() if i in wanted} for frame in self.frames]
