"""The planner's tools, each a small function over the session API: `find` grounds a phrase into
tracked candidates (numbered across finds), `inspect` crops them over time, and `select`, `none` and
`answer` end the question with a reply."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from agent.planner.candidates import Candidates
from agent.planner.config import PlannerConfig
from agent.planner.session import PlanningSession
from agent.trace import Step
from agent.writers.outlines import tile

ENDINGS = ("select", "none", "answer")


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
        self.found: list[Candidates] = []

    def allowed(self, call: int) -> list[str]:
        """The first call finds candidates; the last must end the question."""
        if call == 1:
            return ["find"]
        endings = ["select", "none", "answer"] if self.found else ["none", "answer"]
        if call == self.config.max_calls:
            return endings
        return ["find", *(["inspect"] if self.found else []), *endings]

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
        reply = self.session.choose(self.question, answer, chosen, self.trace)
        return Outcome(f"selected {', '.join(f'#{n}' for n in ids)}", reply=reply)

    def none(self, reason: str) -> Outcome:
        answer = reason.strip() or "No object in this video fits."
        return Outcome("no object", reply=self.session.choose(self.question, answer, [], self.trace))

    def answer(self, text: str) -> Outcome:
        return Outcome("answered", reply=self.session.choose(self.question, text.strip(), [], self.trace))
