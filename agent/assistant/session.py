"""Talk to a backend about one video: `Assistant.load(...).open(video).ask("the dog on the left")`.

Modes: `direct` grounds the instruction as written; `reasoning` lets the model think in text
first, grounds the expression it settled on, shows it its own masked keyframes to verify, and
retries with that feedback a bounded number of times; `auto` answers directly and switches to
reasoning when the direct answer fails verification; `planner` hands the question to an outside
multimodal LLM that calls the session's tools (`find`, then choose; see `agent.planner`), and is
what `auto` means when the assistant has a planner. Every step lands in the reply's trace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any, Union

import numpy as np
from tqdm.auto import tqdm

from agent.assistant.objects import ObjectStore, SessionObject
from agent.assistant.reply import Reply
from agent.backends.base import Backend
from agent.errors import UserError
from agent.grounder.protocol import Grounding, ObjectPrompt, Turn, Verdict
from agent.grounder.visual import POSITIVE, check_box, check_frame, check_mask, check_points
from agent.pipeline import check_instruction
from agent.planner import PlannerClient, run_planner
from agent.planner.candidates import Candidates, collect
from agent.trace import Step
from agent.tracker.protocol import FrameMasks
from agent.video.keyframes import select_keyframes
from agent.video.source import VideoSource
from agent.writers.overlay import draw_overlay
from agent.writers.palette import label_map
from agent.writers.rle import decode_rle, encode_rle

# True: a progress bar (terminal or notebook); a callable: called with (frames done, frames in all, what)
Progress = Union[bool, Callable[[int, int, str], None]]

MODES = ("auto", "direct", "reasoning", "planner")
SAME_OBJECT_IOU = 0.5  # mean keyframe IoU above which a new mask is an earlier turn's object
MEET_IOU = 0.9  # a re-track going back towards an earlier prompt stops where it agrees this well with the old track


class Assistant:
    """A backend you can talk to about videos."""

    def __init__(self, backend: Backend, planner: Any = None):
        self.backend = backend
        self.planner = planner  # an agent.planner.PlannerConfig, or None

    @classmethod
    def load(cls, backend: str = "auto", model: str | None = None, device: str = "auto", planner: Any = None, **options: Any) -> Assistant:
        """By backend name (`lite`, `sa2va`) and, for `sa2va`, a hub id or checkpoint folder; `planner`:
        a `PlannerConfig` (an OpenAI-compatible endpoint and model) that plans over the backend's tools."""
        from agent.backends import load_backend

        if planner is not None:
            planner.check()  # before a model loads
        return cls(load_backend(backend, model, device, **options), planner)

    from_pretrained = load

    def open(self, video: Any, keyframes: list[int] | None = None, progress: Progress = True) -> Session:
        return Session(self.backend, video, keyframes, progress, self.planner)


class Session:
    """A conversation about one video. Objects keep their ids across turns; language and a person's
    clicks, boxes and masks mix freely, and a correction re-tracks only the frames it changes."""

    def __init__(self, backend: Backend, video: Any, keyframes: list[int] | None = None, progress: Progress = True,
                 planner: Any = None):
        self.backend = backend
        self.planner = planner
        self._planner_client = None
        self.video = VideoSource.open(video)
        self.keyframe_indices = select_keyframes(len(self.video), backend.keyframe_count, backend.keyframe_strategy, keyframes)
        self.keyframes = self.video.read_many(self.keyframe_indices)  # decoded once for the whole session
        self.progress = progress
        self.history: list[Turn] = []
        self.replies: list[Reply] = []
        self.objects = ObjectStore(len(self.video))

    def reset(self) -> None:
        """Forget the conversation and the objects; the video stays open."""
        self.history.clear()
        self.replies.clear()
        self.objects = ObjectStore(len(self.video))

    def provenance(self) -> dict[str, Any]:
        """What a saved reply records so it can be reproduced: the backend's provenance and the planner's settings."""
        planner = None if self.planner is None else self.planner.settings()
        return self.backend.provenance() | {"planner": planner}

    def _tracked(self, frames: Iterator[FrameMasks], total: int, what: str) -> Iterator[FrameMasks]:
        """The tracker's frames, with progress shown as they come."""
        report = self.progress if callable(self.progress) else None
        bar = tqdm(total=total, unit="frame", desc=what, leave=False, disable=report is not None or not self.progress)
        try:
            for done, frame in enumerate(frames, 1):
                bar.update()
                if report:
                    report(done, total, what)
                yield frame
        finally:  # also when the consumer stops early
            bar.close()

    # --- the steps -------------------------------------------------------------------------
    def _stable_ids(self, keyframe_masks: dict[int, dict[int, np.ndarray]]) -> dict[int, int]:
        """Backend object id → session id: the same object keeps its id across turns."""
        mapping, taken = {}, set()
        for object_id in sorted({i for masks in keyframe_masks.values() for i in masks}):
            best, best_iou = None, SAME_OBJECT_IOU
            for known_id, known in self.objects.keyframe_masks(keyframe_masks).items():
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
            mapping[object_id] = best if best is not None else max([*self.objects.objects, *mapping.values(), 0]) + 1
            taken.add(mapping[object_id])
        return mapping

    def _materialize(self, question: str, grounding: Grounding, trace: list[Step], mode: str,
                     tracked: Iterator[FrameMasks] | None = None) -> tuple[Reply, dict]:
        """Track the grounded objects through the video into a reply (or take `tracked`, tracks made
        earlier), streaming: each frame's masks become RLE as they come; only the keyframes' are also
        kept decoded, to match earlier objects."""
        reply = Reply(question, grounding.answer, self.video, keyframes=list(self.keyframe_indices), trace=trace, mode=mode,
                      provenance=self.provenance())
        if not grounding.prompts:
            return reply, {}
        frames, keyframe_masks = [], {}
        if tracked is None:
            tracked = self._tracked(self.backend.tracker.track(self.video, grounding.prompts, self.keyframes), len(self.video), "track")
        for frame in tracked:
            frames.append({i: encode_rle(m) for i, m in frame.masks.items()})
            if frame.frame_index in self.keyframes:
                keyframe_masks[frame.frame_index] = frame.masks
        ids = self._stable_ids(keyframe_masks)
        reply._rle = [{ids[i]: rle for i, rle in masks.items()} for masks in frames]
        reply.objects = {ids[i]: d for i, d in grounding.objects.items()}
        reply.prompts = [replace(p, object_id=ids[p.object_id]) for p in grounding.prompts]
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
                    return Reply(question, thought.text, self.video, keyframes=list(self.keyframe_indices), trace=trace, mode="reasoning",
                                 provenance=self.provenance())
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
        if mode == "planner" or (mode == "auto" and self.planner is not None):
            if self.planner is None:
                raise UserError("mode planner needs a planner: pass --planner URL --planner-model NAME (or Assistant.load(..., planner=...))")
            if self._planner_client is None or self._planner_client.config is not self.planner:
                self._planner_client = PlannerClient(self.planner, self.planner.http_client)  # what it learns of the server lasts the session
            reply = run_planner(self, question, trace, self.planner, self._planner_client)
        elif mode == "reasoning":
            reply = self._reasoning(question, trace, max_retries)
        else:
            reply, verdict = self._direct(question, trace, mode)
            if verdict is not None and not verdict.ok:
                trace.append(Step("switch", "the direct answer failed verification: reasoning"))
                reply = self._reasoning(question, trace, max_retries)
        trace.append(Step("answer", reply.answer))
        self._keep(reply)
        self.history += [Turn("user", question), Turn("assistant", reply.answer)]
        self.replies.append(reply)
        return reply

    # --- candidates first, then a choice (the planner's tools) ---------------------------------
    def find(self, phrase: str, limit: int = 5) -> Candidates:
        """Every candidate the backend sees for a short phrase (at most `limit`), each tracked through
        the whole video. Nothing is kept in the session until `choose`."""
        phrase = check_instruction(phrase)
        grounder = self.backend.grounder
        if hasattr(grounder, "candidates"):
            grounding = grounder.candidates(self.keyframes, phrase, self.history, limit=limit)
        else:  # a grounder that only chooses: its chosen objects are the candidates
            grounding = grounder.ground(self.keyframes, phrase, self.history)
        tracked = self.backend.tracker.track(self.video, grounding.prompts, self.keyframes) if grounding.prompts else iter(())
        return collect(phrase, grounding, self._tracked(tracked, len(self.video), "find"), self.video.size)

    def choose(self, question: str, answer: str, chosen: Sequence[tuple[Candidates, int]], trace: list[Step], mode: str = "planner") -> Reply:
        """A reply with the chosen candidates (from one or more `find`s) as objects, their tracks as found."""
        numbered = {n: pick for n, pick in enumerate(chosen, 1)}
        prompts = [replace(p, object_id=n) for n, (found, number) in numbered.items()
                   for p in found.grounding.prompts if p.object_id == number]
        objects = {n: f"{found.phrase}: {found.masklets[number].label}" for n, (found, number) in numbered.items()}

        def tracked() -> Iterator[FrameMasks]:
            for t in range(len(self.video)):
                masks = {}
                for n, (found, number) in numbered.items():
                    masks[n] = found.masks(t, [number]).get(number, np.zeros(self.video.size[::-1], bool))
                yield FrameMasks(t, masks)

        reply, _ = self._materialize(question, Grounding(answer, prompts, objects), trace, mode, tracked() if chosen else None)
        return reply

    def _keep(self, reply: Reply) -> None:
        """The reply's objects join the session's; an object a person corrected keeps its masks."""
        for object_id, description in reply.objects.items():
            known = self.objects.objects.get(object_id)
            if known is not None and known.corrected:
                reply.trace.append(Step("keep", f"object {object_id} keeps the masks you corrected", {"object": object_id}))
                for masks, stored in zip(reply._rle, self.objects.frames):
                    masks[object_id] = stored[object_id]
                continue
            prompts = {p.frame_index: p for p in reply.prompts if p.object_id == object_id}
            named = known is not None and known.named
            self.objects.objects[object_id] = SessionObject(object_id, known.description if named else description, prompts, named=named)
            for masks, stored in zip(reply._rle, self.objects.frames):
                stored[object_id] = masks[object_id]

    # --- a person's prompts ------------------------------------------------------------------
    def add_points(self, frame: int, points: Sequence, labels: Sequence[int] | None = None, object_id: int | None = None) -> Reply:
        """Clicks (x, y) on a frame; labels 1 (on the object, the default) or 0 (not on it). A new object
        when `object_id` is None, else a correction of that object (its mask there is refined)."""
        frame = check_frame(frame, len(self.video))
        points, labels = check_points(points, labels, self.video.size)
        if object_id is None and POSITIVE not in labels:
            raise UserError("a new object needs at least one positive click (label 1) on it")
        clicks = ", ".join(f"{'+' if label else '-'}({x:g}, {y:g})" for (x, y), label in zip(points, labels))
        return self._prompt(frame, object_id, f"clicks {clicks}", points=points, point_labels=labels)

    def add_box(self, frame: int, box: Sequence[float], object_id: int | None = None) -> Reply:
        """A box (x0, y0, x1, y1) around the object on a frame: a new object, or a correction."""
        frame = check_frame(frame, len(self.video))
        box = check_box(box, self.video.size)
        return self._prompt(frame, object_id, "box ({:g}, {:g}, {:g}, {:g})".format(*box), box=box)

    def add_mask(self, frame: int, mask: Any, object_id: int | None = None) -> Reply:
        """The object's mask on a frame (bool, frame size): a new object, or a correction."""
        frame = check_frame(frame, len(self.video))
        mask = check_mask(mask, self.video.size)
        return self._prompt(frame, object_id, f"mask of {int(mask.sum())} pixels", mask=mask)

    def remove(self, object_id: int) -> Reply:
        """Forget an object: its masks and prompts."""
        removed = self.objects.remove(object_id)
        text = f"removed object {object_id} ({removed.description})"
        return self._state_reply(f"remove object {object_id}", text, [Step("remove", text, {"object": object_id})])

    def rename(self, object_id: int, description: str) -> Reply:
        """Call an object something else (what lists and saved results show)."""
        obj = self.objects.get(object_id)
        description = " ".join(str(description).split())
        if not description:
            raise UserError("give the object a name that is not empty")
        old, obj.description, obj.named = obj.description, description, True
        text = f"renamed object {object_id} from {old!r} to {description!r}"
        return self._state_reply(f"rename object {object_id}", text, [Step("rename", text, {"object": object_id})])

    def _prompt(self, frame: int, object_id: int | None, what: str, **given: Any) -> Reply:
        before = self.objects.copy()
        try:
            return self._apply_prompt(frame, object_id, what, given)
        except BaseException:  # an error or a cancelled re-track leaves the objects as they were
            self.objects = before
            raise

    def _apply_prompt(self, frame: int, object_id: int | None, what: str, given: dict) -> Reply:
        new = object_id is None
        if new:
            object_id = self.objects.next_id()
            obj = self.objects.objects[object_id] = SessionObject(object_id, f"{what.split(' ')[0]} on frame {frame}")
            prompt = ObjectPrompt(object_id, frame, **given)
        else:
            obj = self.objects.get(object_id)
            prompt = self._correction(obj, frame, given)
        obj.prompts[frame] = prompt
        obj.corrected = True
        backward, forward = self.objects.window(object_id, frame)
        earliest = self._retrack(prompt, backward, forward)
        span = f"{earliest}–{forward[-1]}"
        text = f"{'added object' if new else 'corrected object'} {object_id} with {what} on frame {frame}; re-tracked frames {span}"
        step = Step("add" if new else "correct", text, {"object": object_id, "frame": frame, "frames": [earliest, forward[-1]]})
        return self._state_reply(f"{what} on frame {frame}", text, [step])

    def _correction(self, obj: SessionObject, frame: int, given: dict) -> ObjectPrompt:
        """What the object's prompt on `frame` becomes: a mask replaces it; clicks join the grounder's
        prompt and earlier clicks there, and refine the object's current mask; a box replaces the box."""
        if "mask" in given:
            return ObjectPrompt(obj.object_id, frame, label=obj.label, **given)
        prompt = replace(obj.prompts.get(frame) or ObjectPrompt(obj.object_id, frame, label=obj.label))
        if "box" in given:
            prompt.box, prompt.mask, prompt.score = given["box"], None, None  # a person's box: no detector's confidence
        else:
            prompt.points = [*(prompt.points or []), *given["points"]]
            prompt.point_labels = [*(prompt.point_labels or []), *given["point_labels"]]
            current = self.objects.mask(obj.object_id, frame)
            prompt.mask = current if current is not None and current.any() else prompt.mask
        return prompt

    def _retrack(self, prompt: ObjectPrompt, backward: range, forward: range) -> int:
        """Track one object from its prompted frame over each range (a span of the video of its own).
        Going back towards an earlier prompt stops once the new track meets the old one. Returns the
        earliest frame whose mask changed."""
        store, object_id = self.objects, prompt.object_id
        for t, frame in zip(forward, self._span_masks(prompt, forward)):
            store.frames[t][object_id] = encode_rle(frame)
        if len(backward) < 2:
            return forward.start
        back = self._span_masks(prompt, backward)
        next(back)  # the prompted frame itself came with the forward range
        if backward.stop < 0:  # no earlier prompt: the new track reaches frame 0
            for t, frame in zip(backward[1:], back):
                store.frames[t][object_id] = encode_rle(frame)
            return 0
        masks = []
        for t, frame in zip(backward[1:], back):
            masks.append(encode_rle(frame))
            old = store.mask(object_id, t)
            if old is not None and np.count_nonzero(old & frame) >= MEET_IOU * np.count_nonzero(old | frame) > 0:
                break  # from here back the two tracks are the same
        return store.stitch(object_id, backward[1 : len(masks) + 1], masks)

    def _span_masks(self, prompt: ObjectPrompt, indices: range) -> Iterator[np.ndarray]:
        keyframes = {0: self.keyframes[indices[0]]} if indices[0] in self.keyframes else {}
        frames = self.backend.tracker.track(self.video.span(indices), [prompt.at(0)], keyframes)
        for frame in self._tracked(frames, len(indices), "re-track"):
            yield frame.masks[prompt.object_id]

    def state(self, question: str = "", answer: str = "", trace: Sequence[Step] = ()) -> Reply:
        """Every object of the session as it stands now (masks, names), as a reply to save or show."""
        objects = {i: o.description for i, o in sorted(self.objects.objects.items())}
        reply = Reply(question, answer, self.video, objects=objects, keyframes=list(self.keyframe_indices), trace=list(trace), mode="prompt",
                      provenance=self.provenance())
        reply._rle = self.objects.snapshot(objects)
        return reply

    def _state_reply(self, question: str, answer: str, trace: list[Step]) -> Reply:
        reply = self.state(question, answer, trace)
        self.replies.append(reply)
        return reply
