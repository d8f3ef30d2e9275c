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
        """The tracker's frames for `prompts` over `video` (default: the whole video), with progress shown as they come."""
        video = self.video if video is None else video
        keyframes = self.keyframes if keyframes is None else keyframes
        if self.feature_cache is None:
            frames = self.backend.tracker.track(video, prompts, keyframes)
        else:
            frames = self.backend.tracker.track(video, prompts, keyframes, cache=self.feature_cache)
        report = self.progress if callable(self.progress) else None
        bar = tqdm(total=len(video), unit="frame", desc=what, leave=False, disable=report is not None or not self.progress)
        try:
            for done, frame in enumerate(frames, 1):
                bar.update()
                if report:
                    report(done, len(video), what)
                yield frame
        finally:  # also when the consumer stops early
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
        for frame in self.track(grounding.prompts) if tracked is None else tracked:
            reply._rle.append({i: encode_rle(m) for i, m in frame.masks.items()})
            if frame.frame_index in self.keyframes:
                keyframe_masks[frame.frame_index] = {i: m for i, m in frame.masks.items() if i in own}
        reply.objects = dict(grounding.objects)
        reply.prompts = list(grounding.prompts)
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
        trace.append(Step("ground", grounding.answer, {"objects": len(grounding.objects)}))
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
            trace.append(Step("ground", grounding.answer, {"expression": expression, "objects": len(grounding.objects)}))
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
