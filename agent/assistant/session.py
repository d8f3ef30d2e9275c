"""Talk to a backend about one video: `Assistant.load(...).open(video).ask("the dog on the left")`.

Modes: `direct` grounds the instruction as written; `reasoning` lets the model think in text
first, grounds the expression it settled on, shows it its own masked keyframes to verify, and
retries with that feedback a bounded number of times; `auto` answers directly and switches to
reasoning when the direct answer fails verification. Every step lands in the reply's trace.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agent.assistant.reply import Reply, Step
from agent.backends.base import Backend
from agent.grounder.protocol import Grounding, Turn, Verdict
from agent.pipeline import check_instruction
from agent.video.keyframes import select_keyframes
from agent.video.source import VideoSource
from agent.writers.overlay import draw_overlay
from agent.writers.palette import label_map
from agent.writers.rle import decode_rle, encode_rle

MODES = ("auto", "direct", "reasoning")
SAME_OBJECT_IOU = 0.5  # mean keyframe IoU above which a new mask is an earlier turn's object


class Assistant:
    """A backend you can talk to about videos."""

    def __init__(self, backend: Backend):
        self.backend = backend

    @classmethod
    def load(cls, backend: str = "auto", model: str | None = None, device: str = "auto", **options: Any) -> Assistant:
        """By backend name (`lite`, `sa2va`) and, for `sa2va`, a hub id or checkpoint folder."""
        from agent.backends import load_backend

        return cls(load_backend(backend, model, device, **options))

    from_pretrained = load

    def open(self, video: Any, keyframes: list[int] | None = None) -> Session:
        return Session(self.backend, video, keyframes)


class Session:
    def __init__(self, backend: Backend, video: Any, keyframes: list[int] | None = None):
        self.backend = backend
        self.video = VideoSource.open(video)
        self.keyframe_indices = select_keyframes(len(self.video), backend.keyframe_count, backend.keyframe_strategy, keyframes)
        self.keyframes = self.video.read_many(self.keyframe_indices)  # decoded once for the whole session
        self.history: list[Turn] = []
        self.replies: list[Reply] = []
        self._known: dict[int, dict[int, dict]] = {}  # stable object id → keyframe index → RLE

    def reset(self) -> None:
        """Forget the conversation (and the object ids); the video stays open."""
        self.history.clear()
        self.replies.clear()
        self._known.clear()

    # --- the steps -------------------------------------------------------------------------
    def _stable_ids(self, keyframe_masks: dict[int, dict[int, np.ndarray]]) -> dict[int, int]:
        """Backend object id → session id: the same object keeps its id across turns."""
        mapping, taken = {}, set()
        for object_id in sorted({i for masks in keyframe_masks.values() for i in masks}):
            best, best_iou = None, SAME_OBJECT_IOU
            for known_id, known in self._known.items():
                if known_id in taken:
                    continue
                ious = []
                for frame, masks in keyframe_masks.items():
                    ours, theirs = masks.get(object_id), known.get(frame)
                    theirs = decode_rle(theirs) if theirs is not None else None
                    if ours is not None and theirs is not None and (ours.any() or theirs.any()):
                        ious.append(np.count_nonzero(ours & theirs) / np.count_nonzero(ours | theirs))
                if ious and np.mean(ious) > best_iou:
                    best, best_iou = known_id, float(np.mean(ious))
            mapping[object_id] = best if best is not None else max([*self._known, *mapping.values(), 0]) + 1
            taken.add(mapping[object_id])
        return mapping

    def _materialize(self, question: str, grounding: Grounding, trace: list[Step], mode: str) -> tuple[Reply, dict]:
        """Track the grounded objects through the video into a reply (masks kept as RLE)."""
        reply = Reply(question, grounding.answer, self.video, keyframes=list(self.keyframe_indices), trace=trace, mode=mode)
        if not grounding.prompts:
            return reply, {}
        frames = list(self.backend.tracker.track(self.video, grounding.prompts, self.keyframes))
        keyframe_masks = {f.frame_index: f.masks for f in frames if f.frame_index in self.keyframes}
        ids = self._stable_ids(keyframe_masks)
        for frame in frames:
            reply.add_frame({ids[i]: m for i, m in frame.masks.items()})
        reply.objects = {ids[i]: d for i, d in grounding.objects.items()}
        trace.append(Step("track", f"tracked {len(ids)} object(s) through {len(frames)} frames", {"ids": ids}))
        return reply, {t: {ids[i]: m for i, m in masks.items()} for t, masks in keyframe_masks.items()}

    def _verify(self, question: str, grounding: Grounding, keyframe_masks: dict, trace: list[Step]) -> Verdict | None:
        verify = getattr(self.backend.grounder, "verify", None)
        if verify is None or not grounding.prompts:
            return None
        width, height = self.video.size
        masked = {t: draw_overlay(self.keyframes[t], label_map(keyframe_masks.get(t, {}), (height, width))) for t in self.keyframes}
        verdict = verify(masked, question, grounding)
        trace.append(Step("verify", verdict.text, {"ok": verdict.ok}))
        return verdict

    def _direct(self, question: str, trace: list[Step], mode: str) -> tuple[Reply, Verdict | None]:
        grounding = self.backend.grounder.ground(self.keyframes, question, self.history)
        trace.append(Step("ground", grounding.answer, {"objects": len(grounding.objects)}))
        reply, keyframe_masks = self._materialize(question, grounding, trace, mode)
        verdict = self._verify(question, grounding, keyframe_masks, trace) if mode == "auto" else None
        return reply, verdict

    def _reasoning(self, question: str, trace: list[Step], retries: int) -> Reply:
        reason = getattr(self.backend.grounder, "reason", None)
        feedback, reply, previous = None, None, None
        for attempt in range(retries + 1):
            expression = question
            if reason is not None:
                thought = reason(self.keyframes, question, self.history, feedback)
                trace.append(Step("reason", thought.text, {"expression": thought.expression, "attempt": attempt}))
                expression = thought.expression
                if expression.strip().lower() in ("none", "nothing"):
                    return Reply(question, thought.text, self.video, keyframes=list(self.keyframe_indices), trace=trace, mode="reasoning")
            elif attempt == 0:
                trace.append(Step("reason", "this backend has no language model to reason with: grounding the instruction as written"))
            grounding = self.backend.grounder.ground(self.keyframes, expression, self.history)
            trace.append(Step("ground", grounding.answer, {"expression": expression, "objects": len(grounding.objects)}))
            reply, keyframe_masks = self._materialize(question, grounding, trace, "reasoning")
            if not grounding.prompts:
                return reply  # no object is an ordinary outcome, not a failure
            verdict = self._verify(question, grounding, keyframe_masks, trace)
            if verdict is None or verdict.ok:
                return reply
            if (expression, grounding.answer) == previous:
                trace.append(Step("retry", "the same object came back: stopping"))
                break
            previous, feedback = (expression, grounding.answer), verdict.text
            if attempt < retries:
                trace.append(Step("retry", f"verification said: {verdict.text}"))
        reply.answer += " (not verified: the check did not confirm this object)"
        return reply

    # --- the API ---------------------------------------------------------------------------
    def ask(self, question: str, mode: str = "auto", max_retries: int = 2) -> Reply:
        """Ask about the video; follow-ups see the earlier turns."""
        question = check_instruction(question)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        trace: list[Step] = []
        if mode == "reasoning":
            reply = self._reasoning(question, trace, max_retries)
        else:
            reply, verdict = self._direct(question, trace, mode)
            if verdict is not None and not verdict.ok:
                trace.append(Step("switch", "the direct answer failed verification: reasoning"))
                reply = self._reasoning(question, trace, max_retries)
        trace.append(Step("answer", reply.answer))
        for frame in self.keyframe_indices if reply.has_masks else []:
            for object_id, mask in reply.masks(frame).items():
                self._known.setdefault(object_id, {})[frame] = encode_rle(mask)
        self.history += [Turn("user", question), Turn("assistant", reply.answer)]
        self.replies.append(reply)
        return reply
