"""What the planner needs of a session: the few members its opening message and its tools use.

`agent.assistant.Session` is one; the planner never imports it, so the arrow runs one way
(assistant → planner).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, Union

from PIL import Image

from agent.grounder.protocol import Turn
from agent.planner.candidates import Candidates
from agent.trace import Step
from agent.video.source import VideoSource


class PlanningSession(Protocol):
    video: VideoSource
    keyframes: Mapping[int, Image.Image]
    history: Sequence[Turn]
    progress: Union[bool, Callable[[int, int, str], None]]

    def find(self, phrase: str, limit: int = 5) -> Candidates:
        """Every candidate the backend sees for a short phrase, each tracked through the whole video."""

    def choose(self, question: str, answer: str, chosen: Sequence[tuple[Candidates, int]], trace: list[Step]) -> Any:
        """The session's reply with the chosen candidates as its objects; the planner hands it back as is."""
