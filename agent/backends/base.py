"""A backend pairs one grounder with one tracker; a spec says whether it can run here and loads it."""

from __future__ import annotations

from dataclasses import dataclass, field
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
    settings: dict[str, Any] = field(default_factory=dict)  # every option and rule value that shapes its results, as used
    options: dict[str, Any] = field(default_factory=dict)  # the load options it was given (the registry records them)

    @property
    def thread_safe(self) -> bool:
        """Whether jobs may run on it from several threads at once: its grounder and its tracker both say so
        (a class attribute `thread_safe = True`). `rvos serve` runs one job at a time on any other."""
        return bool(getattr(self.grounder, "thread_safe", False) and getattr(self.tracker, "thread_safe", False))

    def provenance(self) -> dict[str, Any]:
        """What result.json and report.json record so that a result can be reproduced: the package version,
        the backend, its model and device, the keyframe choice and every setting it ran with."""
        from agent import __version__

        return {"rvos_agent": __version__, "backend": self.name, "model": self.model, "device": self.device,
                "keyframe_count": self.keyframe_count, "keyframe_strategy": self.keyframe_strategy,
                "options": _plain(self.options), "settings": _plain(self.settings)}


def _plain(value: Any) -> Any:
    """JSON-ready: dicts and lists kept, numbers, strings and booleans as they are, anything else (a path) as text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


class BackendSpec(Protocol):
    name: str
    summary: str
    options: frozenset[str]  # the load options it honours (keyword names); the registry refuses any other before loading
    devices: tuple[str, ...]  # device kinds it runs on: "cpu", "cuda"

    def unavailable_reason(self, model: str | None = None) -> str | None:
        """None when the backend can run here; otherwise what is missing and how to get it."""
        ...

    def load(self, model: str | None = None, device: str = "cpu", **options: Any) -> Backend: ...
