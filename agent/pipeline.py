"""The one path from a request to masks: video in → keyframes → grounder → tracker → a `Reply` the writers save.

`Pipeline(backend, video).run(Request("the dog on the left"))`. Every door is a thin adapter over it with the
defaults below: `rvos segment` and `rvos batch` (`segment`), chat, the page and notebooks (`Session.ask`, which
adds the conversation: stable object ids across turns and corrections), `rvos eval` (both protocols) and the
planner's tools (`find`, `choose`). So the same request gives the same masks whichever door it comes through.

Modes: `direct` grounds the instruction as written; `reasoning` lets the model think in text first, grounds the
expression it settled on, shows it its own masked keyframes to verify, and retries with that feedback a bounded
number of times; `auto` answers directly and switches to reasoning when the direct answer fails verification (a
backend with no language model to reason with keeps its answer, marked unverified: reasoning would ground the
same words again); `planner` hands the question to an outside multimodal LLM that calls `find` and then chooses
(see `agent.planner`), and is what `auto` means when a planner is configured. Every step lands in the trace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Union

import numpy as np
from tqdm.auto import tqdm

from agent.backends.base import Backend
from agent.errors import UserError
from agent.grounder.object_facts import FACTS_SETTINGS, best_views, measure
from agent.grounder.protocol import Grounding, ObjectPrompt, Turn, Verdict
from agent.planner import PlannerClient, run_planner
from agent.planner.candidates import Candidates, collect
from agent.reply import Reply
from agent.trace import Step
from agent.tracker.feature_cache import FeatureCache
from agent.tracker.protocol import FrameMasks
from agent.video.keyframes import select_keyframes
from agent.video.source import VideoSource
from agent.writers.overlay import draw_overlay
from agent.writers.palette import label_map
from agent.masks import encode_rle
from agent.prompts import render

# True: a progress bar (terminal or notebook); a callable: called with (frames done, frames in all, what)
Progress = Union[bool, Callable[[int, int, str], None]]

MODES = ("auto", "direct", "reasoning", "planner")
# The defaults of every door (CLI segment, batch, chat, the page, eval, notebooks); none of them sets its own.
DEFAULT_MODE = "auto"
DEFAULT_RETRIES = 2  # reasoning attempts after the first, each with the verifier's feedback
NOT_VERIFIED = " (not verified: the check did not confirm this object)"


def check_instruction(instruction: str) -> str:
    if not isinstance(instruction, str) or not instruction.strip():
        raise UserError('the instruction is empty; say which object to segment, e.g. "the dog on the left"')
    return instruction.strip()


@dataclass(frozen=True)
class Request:
    """What to segment: words, a person's visual prompts (masks, boxes, clicks: each one more object), or both."""

    instruction: str | None = None
    prompts: tuple[ObjectPrompt, ...] = field(default=(), repr=False)
    mode: str = DEFAULT_MODE
    max_retries: int = DEFAULT_RETRIES

    def __post_init__(self) -> None:
        if self.instruction is not None or not self.prompts:
            object.__setattr__(self, "instruction", check_instruction(self.instruction))
        object.__setattr__(self, "prompts", tuple(self.prompts))
        if self.mode not in MODES:
            raise UserError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.mode == "planner" and self.prompts:
            raise UserError("the planner grounds words only; drop the visual prompts (--mask/--box/--point) or use another mode")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise UserError(f"max_retries must be a whole number ≥ 0, not {self.max_retries!r}")


def with_visual_prompts(grounding: Grounding, prompts: Sequence[ObjectPrompt]) -> Grounding:
    """The grounder's objects numbered 1..n, then a person's after them (their own ids + n: with no words, a DAVIS
    annotation's object ids stay as they are)."""
    ids = {old: new for new, old in enumerate(sorted({*grounding.objects, *(p.object_id for p in grounding.prompts)}), 1)}
    base = [replace(p, object_id=ids[p.object_id]) for p in grounding.prompts]
    objects = {ids[i]: grounding.objects.get(i, "grounder") for i in ids}
    person = {old: old + len(ids) for old in dict.fromkeys(p.object_id for p in prompts)}
    extra = [replace(p, object_id=person[p.object_id]) for p in prompts]
    for old, new in person.items():
        first = next(p for p in prompts if p.object_id == old)
        kind = "mask" if first.mask is not None else "box" if first.box is not None else "clicks"
        objects[new] = f"{kind} prompt"
    answer = grounding.answer or (f"Tracking {len(person)} object(s) from your prompts." if person else "")
    return replace(grounding, answer=answer, prompts=[*base, *extra], objects=objects)


def take_instances(reply: Reply, grounding: Grounding, found: dict[int, int]) -> None:
    """A concept prompt stands for every instance of its phrase, and the tracker found and numbered them: the reply's
    objects are those instances (in place of the prompt; each on every frame, empty where it is not output, as other
    trackers give them), each with the prompt that found it, and the answer says how many there are."""
    concepts = {p.object_id: p for p in grounding.prompts if p.concept}
    reply.objects = {i: d for i, d in grounding.objects.items() if i not in concepts}
    reply.objects |= {i: grounding.objects.get(c, concepts[c].label or "") for i, c in sorted(found.items())}
    reply.prompts = [p for p in grounding.prompts if not p.concept] + [replace(concepts[c], object_id=i) for i, c in sorted(found.items())]
    empty = encode_rle(np.zeros(reply.video.size[::-1], bool))
    for masks in reply._rle:
        for i in found:
            masks.setdefault(i, dict(empty))
    counts = {c: sum(1 for owner in found.values() if owner == c) for c in concepts}
    reply.answer = " ".join(
        f'Found {n} instance{"s" if n != 1 else ""} of "{concepts[c].label}".' if n else f'There is no "{concepts[c].label}" in the video.'
        for c, n in counts.items())


class Pipeline:
    """One video and one backend, its keyframes decoded once; what every door runs."""

    def __init__(self, backend: Backend, video: Any, keyframes: Sequence[int] | None = None, progress: Progress = True,
                 planner: Any = None, history: list[Turn] | None = None, feature_cache: FeatureCache | None = None):
        self.backend = backend
        self.planner = planner  # an agent.planner.PlannerConfig, or None
        self.video = VideoSource.open(video)
        self.keyframe_indices = select_keyframes(len(self.video), backend.keyframe_count, backend.keyframe_strategy, keyframes)
        self.keyframes = self.video.read_many(self.keyframe_indices)
        self.progress = progress
        self.history: list[Turn] = [] if history is None else history  # earlier turns (a session shares its list)
        self._planner_client = None
        # the frames' image features a tracker computed, kept for later calls on this video and its spans (a
        # session's corrections); None: one-off runs, which see each frame once
        self.feature_cache = feature_cache

    def provenance(self) -> dict[str, Any]:
        """What a saved result records so it can be reproduced: the backend's provenance and the planner's settings."""
        planner = None if self.planner is None else self.planner.settings()
        return self.backend.provenance() | {"planner": planner}

    def track(self, prompts: Sequence[ObjectPrompt], video: VideoSource | None = None, keyframes=None,
              what: str = "track") -> Iterator[FrameMasks]:
        """The tracker's frames for `prompts` over `video` (default: the whole video), with progress shown as they
        come, and as a tracker works backwards before its first frame is out (a stop lands there too)."""
        video = self.video if video is None else video
        keyframes = self.keyframes if keyframes is None else keyframes
        report = self.progress if callable(self.progress) else None
        shown = report is None and bool(self.progress)
        backwards = f"{what} (backwards)"
        bars: dict[str, tqdm] = {}  # each made when its first frame is done (most runs have no backward pass)

        def step(done: int, total: int, stage: str) -> None:
            if shown:
                if stage not in bars:
                    bars[stage] = tqdm(total=total, unit="frame", desc=stage, leave=False)
                bars[stage].update(done - bars[stage].n)
            if report:
                report(done, total, stage)

        frames = self.backend.tracker.track(video, prompts, keyframes, cache=self.feature_cache,
                                            progress=lambda done, total: step(done, total, backwards))
        try:
            for done, frame in enumerate(frames, 1):
                if backwards in bars:
                    bars.pop(backwards).close()
                step(done, len(video), what)
                yield frame
        finally:  # also when the consumer stops early
            for bar in bars.values():
                bar.close()

    # --- a request -------------------------------------------------------------------------
    def run(self, request: Request) -> Reply:
        """Answer `request` on the video (the earlier turns in `history` are context); the reply holds every frame's masks."""
        trace: list[Step] = []
        mode = request.mode
        if request.instruction is None:  # a person's prompts only: nothing to ground or verify
            reply, _ = self._materialize("", Grounding(""), trace, "prompt", request.prompts)
        elif mode == "planner" or (mode == "auto" and self.planner is not None and not request.prompts):
            reply = self._planned(request.instruction, trace)
        elif mode == "reasoning":
            reply = self._reasoning(request, trace)
        else:
            reply, verdict = self._direct(request, trace, mode)
            if verdict is not None and not verdict.ok:
                if getattr(self.backend.grounder, "reason", None) is None:
                    trace.append(Step("switch", "the direct answer failed verification; this backend has no language model to "
                                                "reason with, so it keeps the answer"))
                    reply.answer += NOT_VERIFIED
                else:
                    trace.append(Step("switch", "the direct answer failed verification: reasoning"))
                    reply = self._reasoning(request, trace)
        trace.append(Step("answer", reply.answer))
        return reply

    def _planned(self, question: str, trace: list[Step]) -> Reply:
        if self.planner is None:
            raise UserError("mode planner needs a planner: pass --planner URL --planner-model NAME (or Assistant.load(..., planner=...))")
        if self._planner_client is None or self._planner_client.config is not self.planner:
            self._planner_client = PlannerClient(self.planner, self.planner.http_client)  # what it learns of the server lasts
        return run_planner(self, question, trace, self.planner, self._planner_client)

    def _materialize(self, question: str, grounding: Grounding, trace: list[Step], mode: str,
                     extra: Sequence[ObjectPrompt] = (), tracked: Iterator[FrameMasks] | None = None) -> tuple[Reply, dict]:
        """Track the grounded objects (and a person's `extra` prompts) through the video into a reply, or take
        `tracked`, tracks made earlier. Each frame's masks become RLE as they come; the keyframes' grounded masks
        are also returned decoded, for verification."""
        grounded = grounding
        grounding = with_visual_prompts(grounding, extra) if tracked is None else grounding
        reply = Reply(question, grounding.answer, self.video, keyframes=list(self.keyframe_indices), trace=trace, mode=mode,
                      provenance=self.provenance())
        if not grounding.prompts:
            return reply, {}
        own = {p.object_id for p in grounding.prompts[: len(grounded.prompts)]}  # the grounder's (a person's come after)
        keyframe_masks: dict[int, dict[int, np.ndarray]] = {}
        found: dict[int, int] = {}  # instances a tracker found for concept prompts → the prompt's id
        for frame in self.track(grounding.prompts) if tracked is None else tracked:
            reply._rle.append({i: encode_rle(m) for i, m in frame.masks.items()})
            found.update(frame.found)
            own.update(frame.found)
            if frame.frame_index in self.keyframes:
                keyframe_masks[frame.frame_index] = {i: m for i, m in frame.masks.items() if i in own}
        reply.objects = dict(grounding.objects)
        reply.prompts = list(grounding.prompts)
        if tracked is None and any(p.concept for p in grounding.prompts):  # (tracks given: their objects are known)
            take_instances(reply, grounding, found)
        trace.append(Step("track", f"tracked {len(reply.objects)} object(s) through {len(reply._rle)} frames"))
        return reply, keyframe_masks

    def _verify(self, question: str, grounding: Grounding, keyframe_masks: dict, trace: list[Step]) -> Verdict | None:
        verify = getattr(self.backend.grounder, "verify", None)
        if verify is None or not grounding.prompts:
            return None
        width, height = self.video.size
        masked = {t: draw_overlay(self.keyframes[t], label_map(keyframe_masks.get(t, {}), (height, width))) for t in self.keyframes}
        verdict = verify(masked, question, grounding)
        trace.append(Step("verify", verdict.text, {"ok": verdict.ok}))
        return verdict

    def _direct(self, request: Request, trace: list[Step], mode: str) -> tuple[Reply, Verdict | None]:
        question = request.instruction
        grounding = self.backend.grounder.ground(self.keyframes, question, self.history)
        trace.append(Step("ground", grounding.extras.get("details", grounding.answer), {"objects": len(grounding.objects)}))
        reply, keyframe_masks = self._materialize(question, grounding, trace, mode, request.prompts)
        verdict = self._verify(question, grounding, keyframe_masks, trace) if mode == "auto" else None
        return reply, verdict

    def _reasoning(self, request: Request, trace: list[Step]) -> Reply:
        question = request.instruction
        reason = getattr(self.backend.grounder, "reason", None)
        feedback, reply, previous = None, None, None
        for attempt in range(request.max_retries + 1):
            expression = question
            if reason is not None:
                thought = reason(self.keyframes, question, self.history, feedback)
                trace.append(Step("reason", thought.text, {"expression": thought.expression, "attempt": attempt}))
                expression = thought.expression
                if expression.strip().lower() in ("none", "nothing"):
                    reply, _ = self._materialize(question, Grounding(thought.text), trace, "reasoning", request.prompts)
                    return reply
            elif attempt == 0:
                trace.append(Step("reason", "this backend has no language model to reason with: grounding the instruction as written"))
            grounding = self.backend.grounder.ground(self.keyframes, expression, self.history)
            trace.append(Step("ground", grounding.extras.get("details", grounding.answer), {"expression": expression, "objects": len(grounding.objects)}))
            reply, keyframe_masks = self._materialize(question, grounding, trace, "reasoning", request.prompts)
            if not grounding.prompts:
                return reply  # no object is an ordinary outcome, not a failure
            verdict = self._verify(question, grounding, keyframe_masks, trace)
            if verdict is None or verdict.ok:
                return reply
            if (expression, grounding.answer) == previous or reason is None:
                trace.append(Step("retry", "the same object came back: stopping"))
                break
            previous, feedback = (expression, grounding.answer), verdict.text
            if attempt < request.max_retries:
                trace.append(Step("retry", f"verification said: {verdict.text}"))
        reply.answer += NOT_VERIFIED
        return reply

    # --- the other direction: words about objects ---------------------------------------------
    def describe(self, masks: Sequence[np.ndarray | None], question: str | None = None, object_id: int = 1,
                 name: str | None = None) -> Reply:
        """Words about the object whose mask on frame t is `masks[t]` (a track: nothing is tracked again):
        what it measures (agent.grounder.object_facts), then the grounder's `describe_object` on the frames
        where it is seen best. `question`: what to answer about it (default: a description)."""
        describe = getattr(self.backend.grounder, "describe_object", None)
        if describe is None:
            raise UserError(f"the {self.backend.name} backend cannot describe objects; use --backend lite or sa2va")
        if len(masks) != len(self.video):
            raise UserError(f"the object has masks for {len(masks)} frames but the video has {len(self.video)}; "
                            "give the masks of this video")
        if not any(m is not None and m.any() for m in masks):
            raise UserError(f"object {object_id} is not seen on any frame (its masks are empty), so there is nothing to describe")
        question = question.strip() or None if question else None
        facts = measure(self.video.frames(), masks)
        views = {t: (self.video.frame(t), masks[t]) for t in best_views(masks)}
        description = describe(views, facts, question)
        record = {"object": object_id, "question": question, "answer": description.text, "frames": description.frames,
                  "name": description.name, "facts": facts.record(), "facts_settings": FACTS_SETTINGS,
                  "details": description.details}
        trace = [Step("describe", description.text, {"object": object_id, "frames": description.frames})]
        empty = np.zeros(self.video.size[::-1], bool)
        reply = Reply(question or "", description.text, self.video, {object_id: name or description.name or f"object {object_id}"},
                      keyframes=description.frames, trace=trace, mode="describe", provenance=self.provenance(),
                      details={"description": record})
        for mask in masks:
            reply.add_frame({object_id: empty if mask is None else mask})
        return reply

    def caption(self) -> Reply:
        """A grounded caption of the video: its phrases linked to objects, each tracked (Sa2VA's grounded
        conversation generation: `<p>phrase</p> [SEG]`, asked with the `caption` prompt, its official wording)."""
        trace: list[Step] = []
        grounder, question = self.backend.grounder, render("caption")
        caption = getattr(grounder, "caption", None)
        grounding = caption(self.keyframes) if caption is not None else grounder.ground(self.keyframes, question, self.history)
        trace.append(Step("ground", grounding.extras.get("details", grounding.answer), {"objects": len(grounding.objects), "caption": True}))
        reply, _ = self._materialize(question, grounding, trace, "caption")
        numbers = {old: new for new, old in enumerate(sorted({*grounding.objects, *(p.object_id for p in grounding.prompts)}), 1)}
        phrases = grounding.extras.get("phrases") or {}
        reply.answer = grounding.extras.get("caption", grounding.answer)  # as a person reads it (the model's own: the trace)
        reply.details["caption"] = {"text": reply.answer,
                                    "phrases": [{"phrase": phrase, "object": numbers[i]} for i, phrase in sorted(phrases.items()) if i in numbers]}
        trace.append(Step("answer", reply.answer))
        return reply

    # --- candidates first, then a choice (the planner's tools) ---------------------------------
    def find(self, phrase: str, limit: int = 5) -> Candidates:
        """Every candidate the backend sees for a short phrase (at most `limit`), each tracked through the whole video."""
        phrase = check_instruction(phrase)
        grounder = self.backend.grounder
        if hasattr(grounder, "candidates"):
            grounding = grounder.candidates(self.keyframes, phrase, self.history, limit=limit)
        else:  # a grounder that only chooses: its chosen objects are the candidates
            grounding = grounder.ground(self.keyframes, phrase, self.history)
        tracked = self.track(grounding.prompts, what="find") if grounding.prompts else iter(())
        return collect(phrase, grounding, tracked, self.video.size)

    def choose(self, question: str, answer: str, chosen: Sequence[tuple[Candidates, int]], trace: list[Step], mode: str = "planner") -> Reply:
        """A reply with the chosen candidates (from one or more `find`s) as objects 1..n, their tracks as found."""
        numbered = dict(enumerate(chosen, 1))
        prompts = [replace(p, object_id=n) for n, (found, number) in numbered.items()
                   for p in found.grounding.prompts if p.object_id == number]
        objects = {n: f"{found.phrase}: {found.masklets[number].label}" for n, (found, number) in numbered.items()}

        def tracked() -> Iterator[FrameMasks]:
            empty = np.zeros(self.video.size[::-1], bool)
            for t in range(len(self.video)):
                yield FrameMasks(t, {n: found.masks(t, [number]).get(number, empty) for n, (found, number) in numbered.items()})

        reply, _ = self._materialize(question, Grounding(answer, prompts, objects), trace, mode, tracked=tracked() if chosen else None)
        return reply


@dataclass
class SegmentationRun:
    out: Path
    reply: Reply

    @property
    def answer(self) -> str:
        return self.reply.answer

    @property
    def keyframes(self) -> list[int]:
        return self.reply.keyframes


def segment(video: Any, instruction: str | None, backend: Backend, out: Path | str, *, mode: str = DEFAULT_MODE,
            planner: Any = None, prompts: Sequence[ObjectPrompt] = (), keyframe_indices: Sequence[int] | None = None,
            overwrite: bool = False, overlay: bool = True, progress: Progress = True) -> SegmentationRun:
    """`rvos segment`: what `instruction` refers to (and the objects a person's `prompts` mark) on every frame of
    `video`, written to `out` (masks/, result.json, overlay.mp4)."""
    from agent.writers.output import SegmentationWriter

    request = Request(instruction, tuple(prompts), mode)
    source = VideoSource.open(video)
    # the writer first: an output folder that is not ours or cannot be written fails before any work is done
    with SegmentationWriter(out, source, request.instruction or "", overwrite=overwrite, overlay=overlay) as writer:
        reply = Pipeline(backend, source, keyframe_indices, progress, planner).run(request)
        return SegmentationRun(reply.write(writer), reply)
