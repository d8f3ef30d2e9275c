"""One step of the agent's work, for a reply's trace: written by the session and by the planner alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Step:
    """One step of the agent's work, for the reply's trace."""

    kind: str  # reason, ground, track, verify, retry, switch, answer; add, correct, remove, rename, keep
    text: str
    detail: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"[{self.kind}] {self.text}"
