"""A backend pairs one grounder with one tracker; a spec says whether it can run here and loads it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from agent.grounder.protocol import Grounder
from agent.tracker.protocol import Tracker


@dataclass
class Backend:
    name: str
    model: str
    device: str
    grounder: Grounder
    tracker: Tracker
    keyframe_count: int = 5
    keyframe_strategy: str = "uniform"


class BackendSpec(Protocol):
    name: str
    summary: str

    def unavailable_reason(self, model: str | None = None) -> str | None:
        """None when the backend can run here; otherwise what is missing and how to get it."""
        ...

    def load(self, model: str | None = None, device: str = "cpu", **options: Any) -> Backend: ...
