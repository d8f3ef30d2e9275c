"""The grounder protocol: keyframes + instruction + history → answer + per-object prompts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from PIL import Image


@dataclass(frozen=True)
class Turn:
    """One earlier message of a conversation."""

    role: str  # "user" or "assistant"
    text: str


@dataclass
class ObjectPrompt:
    """What the tracker needs to find one object on one keyframe.

    A VLM grounder gives a language `embedding` (the projected `[SEG]` state); a
    detector-based grounder gives a `box` (x0, y0, x1, y1 in frame pixels); a known
    `mask` (bool, frame size) is the semi-supervised VOS prompt. A person's clicks are
    `points` (x, y in frame pixels) with `point_labels` (1: on the object, 0: not on it).
    Kinds combine: clicks with a `mask` correct that mask (SAM's iterative refinement),
    clicks with an `embedding` or a `box` add to what the grounder said; a `mask` alone is
    taken as it is.
    """

    object_id: int
    frame_index: int
    embedding: Any | None = None
    box: tuple[float, float, float, float] | None = None
    label: str | None = None  # what kind of object, when the grounder knows (lets a tracker re-detect it)
    score: float | None = None  # a detector's confidence in the `box` (lets a tracker start from the surest)
    mask: Any | None = None
    points: list[tuple[float, float]] | None = None
    point_labels: list[int] | None = None
    # who made it: "grounder" (the model, from words) or "person" (a click, box or mask given by hand; a dataset's
    # annotation counts as one). A tracker may grow a grounder's box like a detection, never a person's.
    source: str = "grounder"
    # True: `label` is a concept (a noun phrase) and the prompt stands for every instance of it; a tracker that
    # detects (sam3) finds the instances itself and gives each its own object id (`FrameMasks.found`)
    concept: bool = False

    def at(self, frame_index: int) -> ObjectPrompt:
        """The same prompt on another frame index (a span of the video counts its own frames)."""
        return replace(self, frame_index=frame_index)


@dataclass
class Grounding:
    """A grounder's reply: the text answer, the objects it chose and how to find them."""

    answer: str
    prompts: list[ObjectPrompt] = field(default_factory=list)
    objects: dict[int, str] = field(default_factory=dict)  # object id → what produced it
    extras: dict[str, Any] = field(default_factory=dict)  # backend details (e.g. raw [SEG] states)

    @property
    def object_ids(self) -> list[int]:
        return sorted(self.objects)


@dataclass
class Thought:
    """A reasoning step's result: the text, and the referring expression it settled on."""

    text: str
    expression: str


@dataclass
class Verdict:
    """A verification's result: is the chosen object the right one, and why (feedback for a retry)."""

    ok: bool
    text: str


@dataclass
class ObjectDescription:
    """Words about one tracked object, and what they came from."""

    text: str
    frames: list[int]  # the frames the describer looked at
    name: str | None = None  # what the object is, when the describer can say
    details: dict[str, Any] = field(default_factory=dict)  # how it was described (for the trace and --json)


class Grounder(Protocol):
    def ground(
        self,
        keyframes: Mapping[int, Image.Image],
        instruction: str,
        history: Sequence[Turn] = (),
    ) -> Grounding: ...


# Optional, for the agent's reasoning mode (a grounder may have either, both or neither):
#   reason(keyframes, instruction, history, feedback=None) -> Thought
#   verify(masked_keyframes, instruction, grounding) -> Verdict
# and for the other direction, words about an object a track already holds (agent.pipeline.Pipeline.describe):
#   describe_object(views, facts, question=None) -> ObjectDescription
#     views: {frame index: (image, bool mask)} where it is seen best; facts: agent.grounder.object_facts.ObjectFacts
# and for a grounded caption of the whole video (objects it mentions, each tracked):
#   caption(keyframes) -> Grounding  (without it, the grounder is asked the `caption` prompt)
