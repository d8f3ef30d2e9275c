"""The planner's tools, each a small function over the session API: `find` grounds a phrase into
tracked candidates (numbered across finds), `inspect` crops them over time, and `select`, `none` and
`answer` end the question with a reply.

Verification (`PlannerConfig.verify`, on by default): a `select` made while a call is left does not end the
question; the planner is shown the chosen masks on frames spread over the whole video and ends with `confirm`,
or changes its mind (another `find`, `inspect`, `select`, or `none`). A `select` on the last call ends at once."""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from agent.planner.candidates import Candidates
from agent.planner.client import tool_schemas
from agent.planner.config import PlannerConfig
from agent.planner.session import PlanningSession
from agent.prompts import render
from agent.trace import Step
from agent.writers.outlines import draw_outlines, tile

ENDINGS = ("select", "none", "answer", "confirm")
VERIFY_FRAMES = 4  # frames of the whole video shown to verify a selection


class ToolError(Exception):
    """A call that was well formed but can't be done (an unknown candidate): told to the planner."""


@dataclass
class Outcome:
    text: str
    images: list[Image.Image] = field(default_factory=list)
    reply: Any = None  # the session's reply, set when the call ends the question


class Toolbox:
    def __init__(self, session: PlanningSession, question: str, config: PlannerConfig, trace: list[Step]):
        self.session, self.question, self.config, self.trace = session, question, config, trace
        self.schemas = tool_schemas()
        self.found: list[Candidates] = []
        self.call = 0  # the call being answered
        self.pending: tuple[list[tuple[Candidates, int]], str] | None = None  # a selection waiting for `confirm`

    def allowed(self, call: int) -> dict[str, dict]:
        """The tools this call may use, each with its schema: the first call finds candidates; the last must end the
        question; `confirm` only a selection shown. Candidate numbers are limited to the known ones and frames to the
        video's, so a server that constrains its output (tool_choice, structured output) cannot name others."""
        self.call = call
        if call == 1:
            names = ["find"]
        elif call == self.config.max_calls:
            names = self.endings()
        else:
            names = ["find", *(["inspect"] if self.found else []), *self.endings()]
        return {name: self._schema(name) for name in names}

    def _schema(self, name: str) -> dict:
        schema = copy.deepcopy(self.schemas[name])
        properties = schema["parameters"].get("properties", {})
        known = [n for found in self.found for n in found.numbers]
        if "ids" in properties and known:
            ids = properties["ids"]
            ids["items"]["enum"] = known
            ids["maxItems"] = min(ids.get("maxItems", len(known)), len(known))
        if "frames" in properties:
            properties["frames"]["items"].update(minimum=0, maximum=max(0, len(self.session.video) - 1))
        return schema

    def endings(self) -> list[str]:
        """The tools that may end the question now."""
        return (["confirm"] if self.pending else []) + (["select", "none", "answer"] if self.found else ["none", "answer"])

    def run(self, tool: str, arguments: dict[str, Any]) -> Outcome:
        try:
            return getattr(self, tool)(**arguments)
        except ToolError as exc:
            return Outcome(f"error: {exc}")

    def _owner(self, number: int) -> Candidates:
        for found in self.found:
            if number in found.masklets:
                return found
        known = ", ".join(f"#{n}" for found in self.found for n in found.numbers) or "none yet"
        raise ToolError(f"there is no candidate #{number} (known: {known})")

    # --- the tools ---------------------------------------------------------------------------------
    def find(self, phrase: str) -> Outcome:
        offset = max((n for found in self.found for n in found.numbers), default=0)
        found = self.session.find(phrase, limit=self.config.candidates).renumbered(offset)
        if not found.masklets:
            return Outcome(f"no candidates for {phrase!r}: {found.grounding.answer}")
        self.found.append(found)
        image = found.image(self.session.keyframes, self.config.image_width)
        return Outcome(f"{len(found.masklets)} candidate(s) for {phrase!r} (the grounder said: {found.grounding.answer})\n{found.table()}", [image])

    def inspect(self, ids: list[int], frames: list[int] | None = None) -> Outcome:
        groups: dict[int, list[int]] = defaultdict(list)  # index of the find → its candidates asked for
        for number in ids:
            groups[self.found.index(self._owner(number))].append(number)
        images, lines = [], []
        for index, numbers in groups.items():
            found = self.found[index]
            image, shown = found.crops(self.session.video, numbers, frames, self.config.image_width)
            images.append(image)
            for number in numbers:
                masklet = found.masklets[number]
                where = "; ".join(f"frame {f}: box {list(masklet.boxes[f])}, area {masklet.areas[f] * 100:.1f}%"
                                  if f in masklet.boxes else f"frame {f}: not visible" for f in shown)
                lines.append(f"#{number} {masklet.label}: {where or 'never visible'}")
        return Outcome("\n".join(lines), [tile(images, columns=1)] if len(images) > 1 else images)

    def select(self, ids: list[int], reason: str) -> Outcome:
        chosen = [(self._owner(n), n) for n in dict.fromkeys(ids)]
        answer = reason.strip() or "Selected " + ", ".join(f"#{n}" for n in ids)
        named = ", ".join(f"#{n}" for _, n in chosen)
        if self.pending is not None and [n for _, n in self.pending[0]] == [n for _, n in chosen]:
            return self.confirm()  # the selection shown, selected again: confirmed
        if self.config.verify and self.call < self.config.max_calls:
            self.pending = (chosen, answer)
            image, frames = self._selection_image(chosen)
            self.trace.append(Step("verify", f"shown {named} on frames {', '.join(map(str, frames))} to confirm",
                                   {"ids": [n for _, n in chosen], "frames": frames, "images": [image]}))
            lines = [line for found, n in chosen for line in found.table().splitlines() if line.startswith(f"#{n} ")]
            return Outcome(render("verify", "planner", ids=named, frames=", ".join(map(str, frames)), question=self.question,
                                  candidates="\n".join(lines)), [image])
        self.pending = None
        reply = self.session.choose(self.question, answer, chosen, self.trace)
        return Outcome(f"selected {named}", reply=reply)

    def confirm(self) -> Outcome:
        if self.pending is None:
            raise ToolError("there is no selection to confirm: select first")
        chosen, answer = self.pending
        named = ", ".join(f"#{n}" for _, n in chosen)
        self.trace.append(Step("verify", f"confirmed {named}", {"ids": [n for _, n in chosen]}))
        return Outcome(f"selected {named}", reply=self.session.choose(self.question, answer, chosen, self.trace))

    def _selection_image(self, chosen: list[tuple[Candidates, int]]) -> tuple[Image.Image, list[int]]:
        """The chosen candidates' outlines on frames spread over the whole video (where the planner can see a
        candidate leave, swap with another, or never be the object at all), not only the keyframes."""
        video = self.session.video
        count = len(video)
        frames = sorted({round(x) for x in np.linspace(0, count - 1, min(VERIFY_FRAMES, count))})
        shots = []
        for t in frames:
            masks = {n: m for found, n in chosen for m in found.masks(t, [n]).values()}
            shots.append(draw_outlines(video.frame(t), masks, self.config.image_width, caption=f"frame {t}"))
        return tile(shots), frames

    def none(self, reason: str) -> Outcome:
        self.pending = None
        answer = reason.strip() or "No object in this video fits."
        return Outcome("no object", reply=self.session.choose(self.question, answer, [], self.trace))

    def answer(self, text: str) -> Outcome:
        self.pending = None
        return Outcome("answered", reply=self.session.choose(self.question, text.strip(), [], self.trace))
