"""Where the planner is and how far it may go."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from agent.errors import UserError

PROTOCOLS = ("auto", "tools", "json")
KEY_VARIABLES = ("RVOS_PLANNER_API_KEY", "OPENAI_API_KEY")  # the key is read from these, never from the command line


@dataclass(frozen=True)
class PlannerConfig:
    """An OpenAI-compatible chat-completions endpoint (vLLM, SGLang, llama.cpp, Ollama, LM Studio, a
    hosted API) and the model it serves; the calls and seconds one question may take."""

    url: str  # e.g. http://127.0.0.1:8000/v1
    model: str
    protocol: str = "auto"  # tools: tool calls; json: a JSON reply under the server's schema; auto: tools, else json
    max_calls: int = 8
    max_seconds: float = 300.0
    retries: int = 2  # malformed replies retried, with the error shown to the model
    candidates: int = 5  # most candidates one find returns
    image_width: int = 448  # of each keyframe in the images sent
    max_tokens: int = 512  # per reply
    # after `select`, show the chosen masks over the video and ask the planner to confirm or change them (the
    # verification pass of the MLLM + SAM 3 agents); it costs one call, taken from `max_calls`
    verify: bool = True
    http_client: Any = field(default=None, compare=False, repr=False)  # an httpx.Client to talk through (proxy, TLS, tests)

    def check(self) -> PlannerConfig:
        parsed = urlparse(self.url or "")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise UserError(f"--planner must be the server's http(s) address, e.g. http://127.0.0.1:8000/v1, not {self.url!r}")
        if not (self.model or "").strip():
            raise UserError("--planner-model is needed: the model name the server serves (its /v1/models lists them)")
        if self.protocol not in PROTOCOLS:
            raise UserError(f"--planner-protocol must be one of {', '.join(PROTOCOLS)}")
        if self.max_calls < 2 or self.max_seconds <= 0 or self.retries < 0 or self.candidates < 1:
            raise UserError("the planner needs --planner-max-calls ≥ 2 (a find and an ending), --planner-max-seconds > 0")
        return self

    def settings(self) -> dict:
        """What result.json and report.json record of the planner (never the key, which is not kept here)."""
        return {k: v for k, v in vars(self).items() if k != "http_client"}

    @staticmethod
    def api_key() -> str:
        """The key from the environment; local servers take any."""
        return next((os.environ[name] for name in KEY_VARIABLES if os.environ.get(name)), "none")
