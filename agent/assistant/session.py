"""Talk to a backend about one video: `Assistant.load(...).open(video).ask("the dog on the left")`.

A session is a conversation over the one path (`agent.pipeline`): each question is a `Request` the pipeline
answers with the same defaults as every other door (mode `auto`: see `agent.pipeline` for the modes); the
session adds what a conversation needs — the earlier turns as context, objects that keep their ids across
turns, and a person's clicks, boxes and masks that correct an object by re-tracking only the frames they change.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from agent.assistant.objects import ObjectStore, SessionObject
from agent.backends.base import Backend
from agent.errors import UserError
from agent.grounder.protocol import ObjectPrompt, Turn
from agent.grounder.questions import is_question, named_objects, question_kind, refers_by_pronoun
from agent.grounder.visual import POSITIVE, check_box, check_frame, check_mask, check_points
from agent.pipeline import DEFAULT_MODE, DEFAULT_RETRIES, MODES, Pipeline, Progress, Request, check_instruction
from agent.planner.candidates import Candidates
from agent.reply import Reply
from agent.tracker.feature_cache import DEFAULT_FEATURE_CACHE_MB, FeatureCache
from agent.trace import Step
from agent.masks import decode_rle, encode_rle, mask_iou

__all__ = ["MODES", "Assistant", "Session"]

# words of a question that name no object (the rest are matched against the objects' names)
QUESTION_WORDS = {"what", "which", "who", "where", "when", "how", "is", "are", "was", "does", "do", "doing", "the", "a", "an",
                  "this", "that", "it", "its", "of", "in", "on", "to", "going", "moving", "visible", "seen", "describe", "kind", ""}

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

    def open(self, video: Any, keyframes: list[int] | None = None, progress: Progress = True,
             feature_cache_mb: float = DEFAULT_FEATURE_CACHE_MB, *, live: bool | None = None, **live_options: Any):
        """A `Session` over a video (a file, a frame folder, frames), or a `LiveSession` over a live source:
        `-`, a named pipe, a stream URL, `/dev/videoN`, a `LiveSource`, or a file with `live=True`.
        `live_options` (live only): `out`, `instruction`, `mode`, `settings` (an `agent.live.LiveSettings`),
        `queue_size`, `reconnect`."""
        from agent.video.live import LiveSource, live_kind

        if live is None:
            live = isinstance(video, LiveSource) or (isinstance(video, str) and live_kind(video) is not None)
        if not live:
            if live_options:
                raise UserError(f"{', '.join(sorted(live_options))}: for a live source only (pass live=True)")
            return Session(self.backend, video, keyframes, progress, self.planner, feature_cache_mb)
        from agent.assistant.live import LiveSession

        source_options = {k: live_options.pop(k) for k in ("queue_size", "reconnect") if k in live_options}
        if "out" in live_options:  # a folder we cannot use is refused before the stream is opened
            from agent.writers.live import check_live_folder

            check_live_folder(live_options["out"])
        source = video if isinstance(video, LiveSource) else LiveSource.open(str(video), **source_options)
        try:
            return LiveSession(self.backend, source, planner=self.planner, **live_options)
        except BaseException:
            source.close()
            raise


class Session:
    """A conversation about one video. Objects keep their ids across turns; language and a person's
    clicks, boxes and masks mix freely, and a correction re-tracks only the frames it changes."""

    def __init__(self, backend: Backend, video: Any, keyframes: list[int] | None = None, progress: Progress = True,
                 planner: Any = None, feature_cache_mb: float = DEFAULT_FEATURE_CACHE_MB):
        # a conversation sees its frames again (corrections, later questions): their image features are kept,
        # bounded in bytes (0: none)
        cache = FeatureCache.from_mb(feature_cache_mb) if feature_cache_mb > 0 else None
        self.pipeline = Pipeline(backend, video, keyframes, progress, planner, feature_cache=cache)
        self.backend, self.planner, self.video = backend, planner, self.pipeline.video
        self.keyframe_indices, self.keyframes = self.pipeline.keyframe_indices, self.pipeline.keyframes
        self.history: list[Turn] = self.pipeline.history  # one list: the pipeline grounds with the conversation's turns
        self.replies: list[Reply] = []
        self.objects = ObjectStore(len(self.video))
        self.focus: int | None = None  # the object the conversation is about ("where is it?")

    @property
    def feature_cache(self) -> FeatureCache | None:
        return self.pipeline.feature_cache

    @feature_cache.setter
    def feature_cache(self, cache: FeatureCache | None) -> None:
        self.pipeline.feature_cache = cache

    @property
    def progress(self) -> Progress:
        return self.pipeline.progress

    @progress.setter
    def progress(self, value: Progress) -> None:
        self.pipeline.progress = value

    def reset(self) -> None:
        """Forget the conversation and the objects; the video stays open."""
        self.history.clear()
        self.replies.clear()
        self.objects = ObjectStore(len(self.video))
        self.focus = None

    def provenance(self) -> dict[str, Any]:
        return self.pipeline.provenance()

    # --- the API ---------------------------------------------------------------------------
    def ask(self, question: str, mode: str = DEFAULT_MODE, max_retries: int = DEFAULT_RETRIES,
            prompts: Sequence[ObjectPrompt] = ()) -> Reply:
        """Ask about the video; follow-ups see the earlier turns. `prompts`: a person's masks, boxes or clicks, each
        one more object tracked with what the words find (as `rvos segment --mask/--box/--point` does)."""
        question = check_instruction(question)
        about = None if prompts else self._object_asked_about(question)
        if about is not None:  # a question about an object the session already tracks: answered from its track
            return about()
        reply = self.pipeline.run(Request(question, tuple(prompts), mode, max_retries))
        return self._joined(question, reply)

    def describe(self, object_id: int, question: str | None = None) -> Reply:
        """Words about an object the session tracks (what it is, where, what it is doing, when it is seen), or the
        answer to `question` about it, from its track as it stands (corrections included); nothing is tracked again."""
        obj = self.objects.get(object_id)
        masks = [self.objects.mask(object_id, t) for t in range(len(self.video))]
        reply = self.pipeline.describe(masks, question, object_id, obj.description)
        self.focus = object_id
        self.history += [Turn("user", question or f"describe object {object_id}"), Turn("assistant", reply.answer)]
        self.replies.append(reply)
        return reply

    def caption(self) -> Reply:
        """A grounded caption of the video; each phrase's object joins the session (Pipeline.caption)."""
        reply = self.pipeline.caption()
        return self._joined(reply.question, reply)

    def _joined(self, question: str, reply: Reply) -> Reply:
        self._match_earlier_objects(reply)
        self._keep(reply)
        if len(reply.objects) == 1:
            self.focus = next(iter(reply.objects))  # what "it" means in the next question
        self.history += [Turn("user", question), Turn("assistant", reply.answer)]
        self.replies.append(reply)
        return reply

    def _object_asked_about(self, question: str):
        """When `question` asks about objects the session has ("what is object 2 doing?", "where is it?", "what is the
        dog doing?", "how many objects are there?"), what answers it; None for anything else (it is grounded)."""
        known = self.objects.objects
        if not known or not is_question(question):  # "the car moving left" is a request, even with a car in the session
            return None
        kind, named = question_kind(question), [i for i in named_objects(question) if i in known]
        if kind == "count" and "object" in question.lower():
            listed = ", ".join(f"#{i} {o.description}" for i, o in sorted(known.items()))
            return lambda: self._state_reply(question, f"I am following {len(known)} object(s): {listed}.", [Step("count", listed)])
        if named:
            return lambda: self.describe(named[0], question)
        if kind in (None, "count"):
            return None
        if refers_by_pronoun(question) and self.focus in known:
            return lambda: self.describe(self.focus, question)
        words = {w.strip(".,!?'\"") for w in question.lower().split()} - QUESTION_WORDS
        by_name = [i for i, o in known.items() if words & set(f"{o.description} {o.label or ''} {o.asked}".lower().replace(",", " ").split())]
        if len(by_name) == 1:
            return lambda: self.describe(by_name[0], question)
        return None

    def find(self, phrase: str, limit: int = 5) -> Candidates:
        """Every candidate the backend sees for a short phrase (the planner's tool); nothing is kept until `choose`."""
        return self.pipeline.find(phrase, limit)

    def choose(self, question: str, answer: str, chosen: Sequence[tuple[Candidates, int]], trace: list[Step], mode: str = "planner") -> Reply:
        return self.pipeline.choose(question, answer, chosen, trace, mode)

    # --- a reply joins the conversation --------------------------------------------------------
    def _match_earlier_objects(self, reply: Reply) -> None:
        """The same object keeps its id across turns; a new one keeps the pipeline's number when no earlier object has
        it (so a first turn is numbered exactly as `rvos segment` numbers it), else takes the next free one."""
        if not reply.has_masks:
            return
        keyframe_masks = {t: reply.masks(t) for t in self.keyframe_indices}
        mapping, taken = {}, set()
        for object_id in sorted(reply.objects):
            best, best_iou = None, SAME_OBJECT_IOU
            for known_id, known in self.objects.keyframe_masks(keyframe_masks).items():
                if known_id in taken:
                    continue
                ious = []
                for frame, masks in keyframe_masks.items():
                    ours, theirs = masks.get(object_id), known.get(frame)
                    theirs = decode_rle(theirs) if theirs is not None else None
                    if ours is not None and theirs is not None and (ours.any() or theirs.any()):  # frames where it is seen
                        ious.append(mask_iou(ours, theirs))
                if ious and np.mean(ious) > best_iou:
                    best, best_iou = known_id, float(np.mean(ious))
            if best is None:  # a new object: its own number when that is free, else the next free one
                free = object_id not in self.objects.objects and object_id not in mapping.values()
                best = object_id if free else max([*self.objects.objects, *mapping.values(), 0]) + 1
            mapping[object_id] = best
            taken.add(mapping[object_id])
        if all(old == new for old, new in mapping.items()):
            return
        reply._rle = [{mapping[i]: rle for i, rle in masks.items()} for masks in reply._rle]
        reply.objects = {mapping[i]: d for i, d in reply.objects.items()}
        reply.prompts = [replace(p, object_id=mapping[p.object_id]) for p in reply.prompts]
        for link in reply.details.get("caption", {}).get("phrases", []):
            link["object"] = mapping.get(link["object"], link["object"])
        moved = ", ".join(f"{old} → {new}" for old, new in mapping.items() if old != new)
        reply.trace.insert(len(reply.trace) - 1, Step("match", f"objects numbered as in the earlier turns: {moved}", {"ids": mapping}))

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
            self.objects.objects[object_id] = SessionObject(object_id, known.description if named else description, prompts, named=named,
                                                            asked=reply.question)
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
            prompt = ObjectPrompt(object_id, frame, source="person", **given)
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
            return ObjectPrompt(obj.object_id, frame, label=obj.label, source="person", **given)
        # a person has now had a say in this prompt: no tracker grows it like a detector's box
        prompt = replace(obj.prompts.get(frame) or ObjectPrompt(obj.object_id, frame, label=obj.label), source="person")
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
            if old is not None and frame.any() and mask_iou(old, frame) >= MEET_IOU:
                break  # from here back the two tracks are the same
        return store.stitch(object_id, backward[1 : len(masks) + 1], masks)

    def _span_masks(self, prompt: ObjectPrompt, indices: range) -> Iterator[np.ndarray]:
        keyframes = {0: self.keyframes[indices[0]]} if indices[0] in self.keyframes else {}
        for frame in self.pipeline.track([prompt.at(0)], self.video.span(indices), keyframes, what="re-track"):
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
