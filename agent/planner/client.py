"""Talking to the planner: an OpenAI-compatible chat-completions server, through the `openai` client.

Two protocols: `tools` (the server's tool calling, the tools described by JSON schema) and `json` (one
JSON object per reply, constrained by the server's structured output), for servers without tool
calling; `auto` starts with tools and moves to json when the server refuses them. A reply that can't
be used is sent back with what was wrong, a bounded number of times.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from agent.errors import UserError
from agent.planner.config import PlannerConfig
from agent.prompts import PROMPTS_DIR, render
from agent.trace import Step


class PlannerError(UserError):
    """The planner could not finish: the endpoint is down, refused, timed out, or kept replying badly."""


class Malformed(Exception):
    """A reply that is not one valid call of an allowed tool."""


class NoToolCall(Malformed):
    """A reply with no call at all: under `auto`, a sign the server ignores tool_choice."""


def tool_schemas() -> dict[str, dict]:
    return json.loads((PROMPTS_DIR / "planner" / "tools.json").read_text())


@dataclass
class Call:
    tool: str
    arguments: dict[str, Any]
    id: str = "call-1"


@dataclass
class Exchange:
    """One tool call and what came back."""

    call: Call
    result: str
    images: list[Image.Image] = field(default_factory=list)


@dataclass
class Conversation:
    """What the planner has been told, kept apart from either protocol's message shapes."""

    system: str
    question: str
    images: list[Image.Image]
    exchanges: list[Exchange] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # this step's unusable replies and why


def data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _content(text: str, images: list[Image.Image]) -> list[dict] | str:
    if not images:
        return text
    return [{"type": "text", "text": text}, *({"type": "image_url", "image_url": {"url": data_url(i)}} for i in images)]


class PlannerClient:
    def __init__(self, config: PlannerConfig, http_client: Any = None):
        from openai import OpenAI

        self.config = config
        self.protocol = "tools" if config.protocol == "auto" else config.protocol
        self.json_format = "json_schema"  # OpenAI's; "json_object" with a "schema" is llama.cpp's older dialect
        self.refusal = ""  # the last refusal that changed the protocol or format, for the trace
        self.client = OpenAI(base_url=config.url, api_key=config.api_key(), max_retries=1, http_client=http_client)

    # --- messages ------------------------------------------------------------------------------
    def messages(self, conversation: Conversation, allowed: Mapping[str, dict]) -> list[dict]:
        system = conversation.system
        if self.protocol == "json":
            tools = json.dumps({name: allowed[name] for name in allowed}, indent=1)
            system += "\n\n" + render("json_protocol", "planner", tools=tools)
        messages = [{"role": "system", "content": system}, {"role": "user", "content": _content(conversation.question, conversation.images)}]
        for exchange in conversation.exchanges:
            call = exchange.call
            if self.protocol == "tools":
                function = {"name": call.tool, "arguments": json.dumps(call.arguments)}
                messages.append({"role": "assistant", "content": "", "tool_calls": [{"id": call.id, "type": "function", "function": function}]})
                messages.append({"role": "tool", "tool_call_id": call.id, "content": exchange.result})
                if exchange.images:
                    messages.append({"role": "user", "content": _content(render("tool_image", "planner", tool=call.tool), exchange.images)})
            else:
                messages.append({"role": "assistant", "content": json.dumps({"tool": call.tool, "arguments": call.arguments})})
                messages.append({"role": "user", "content": _content(exchange.result, exchange.images)})
        for reply, error in conversation.rejected:
            messages.append({"role": "assistant", "content": reply})
            messages.append({"role": "user", "content": render("malformed", "planner", error=error, tools=", ".join(allowed))})
        return messages

    def _request(self, conversation: Conversation, allowed: Mapping[str, dict], timeout: float) -> Any:
        options: dict[str, Any] = {"model": self.config.model, "temperature": 0, "max_tokens": self.config.max_tokens, "timeout": timeout,
                                   "messages": self.messages(conversation, allowed)}
        if self.protocol == "tools":
            options["tools"] = [{"type": "function", "function": {"name": n, **allowed[n]}} for n in allowed]
            options["tool_choice"] = {"type": "function", "function": {"name": next(iter(allowed))}} if len(allowed) == 1 else "required"
        else:
            schema = {"anyOf": [{"type": "object", "additionalProperties": False, "required": ["tool", "arguments"],
                                 "properties": {"tool": {"const": n}, "arguments": allowed[n]["parameters"]}} for n in allowed]}
            if self.json_format == "json_schema":
                options["response_format"] = {"type": "json_schema", "json_schema": {"name": "tool_call", "strict": True, "schema": schema}}
            else:
                options["response_format"] = {"type": "json_object", "schema": schema}
        return self.client.chat.completions.create(**options).choices[0].message

    # --- replies -------------------------------------------------------------------------------
    def _parse(self, message: Any, allowed: Mapping[str, dict], number: int) -> Call:
        import jsonschema

        content = (message.content or "").strip()
        calls = getattr(message, "tool_calls", None) or []
        if calls:
            tool = calls[0].function.name
            try:
                arguments = json.loads(calls[0].function.arguments or "{}")
            except json.JSONDecodeError as exc:
                raise Malformed(f"the arguments of {tool} are not valid JSON ({exc})") from None
        else:  # json protocol, or a server that writes the call as text
            try:
                data = json.loads(content)
            except json.JSONDecodeError:
                data = None
            if not isinstance(data, dict) or "tool" not in data:
                raise NoToolCall("the reply has no tool call" + (f" (it said: {content[:200]!r})" if content else ""))
            tool, arguments = data["tool"], data.get("arguments", {})
        if tool not in allowed:
            raise Malformed(f"{tool!r} cannot be called now")
        try:
            jsonschema.validate(arguments, allowed[tool]["parameters"])
        except jsonschema.ValidationError as exc:
            raise Malformed(f"the arguments of {tool} do not fit its schema: {exc.message}") from None
        given_id = getattr(calls[0], "id", None) if calls else None
        return Call(tool, arguments, given_id or f"call-{number}")

    def next_call(self, conversation: Conversation, allowed: Mapping[str, dict], deadline: float, trace: list[Step]) -> Call:
        """The planner's next call of one of the `allowed` tools (name → its schema for this call), retried while its
        replies can't be used."""
        conversation.rejected = []
        number = len(conversation.exchanges) + 1
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PlannerError(f"the planner did not finish within {self.config.max_seconds:g} s; raise --planner-max-seconds "
                                   "or use a faster model or server")
            message = self._send(conversation, allowed, remaining)
            if message is None:
                trace.append(Step("switch", f"the server refused the request ({self.refusal[:120]}): asking with {self.protocol} protocol, "
                                            f"{self.json_format} format instead"))
                continue
            try:
                return self._parse(message, allowed, number)
            except Malformed as exc:
                if isinstance(exc, NoToolCall) and self.protocol == "tools" and self.config.protocol == "auto":
                    self.protocol = "json"
                    trace.append(Step("switch", "the server answered without a tool call: asking for a JSON reply under its structured output instead"))
                    continue
                if len(conversation.rejected) >= self.config.retries:
                    raise PlannerError(f"the planner's replies could not be used after {self.config.retries} retries ({exc}); use a model "
                                       "with tool calling or structured output, or try --planner-protocol json") from None
                calls = getattr(message, "tool_calls", None) or []
                raw = message.content or (calls[0].function.model_dump_json() if calls else "")
                conversation.rejected.append((raw, str(exc)))
                trace.append(Step("retry", f"the planner's reply could not be used: {exc}", {"reply": raw}))

    def _send(self, conversation: Conversation, allowed: Mapping[str, dict], timeout: float) -> Any:
        import openai

        where = f"the planner at {self.config.url}"
        try:
            return self._request(conversation, allowed, timeout)
        except openai.APITimeoutError:
            raise PlannerError(f"{where} did not answer within {self.config.max_seconds:g} s; raise --planner-max-seconds or use a "
                               "faster model") from None
        except openai.APIConnectionError as exc:
            raise PlannerError(f"{where} cannot be reached ({exc.__cause__ or exc}); start the server or fix --planner") from None
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise PlannerError(f"{where} refused the key ({exc.status_code}); set RVOS_PLANNER_API_KEY") from None
        except openai.NotFoundError:
            raise PlannerError(f"{where} has no model {self.config.model!r} or no chat completions there (404); check "
                               "--planner-model and that the address ends in /v1") from None
        except openai.RateLimitError:
            raise PlannerError(f"{where} is rate-limiting (429); wait, or use another server") from None
        except openai.APIStatusError as exc:
            # Servers speak dialects: refusing tools or a response_format (some with 400, llama.cpp's with 500).
            self.refusal = f"{exc.status_code}: {_message(exc)}"
            if self.protocol == "tools" and self.config.protocol == "auto":
                self.protocol = "json"
                return None
            if self.protocol == "json" and self.json_format == "json_schema":
                self.json_format = "json_object"
                return None
            raise PlannerError(f"{where} refused the request ({exc.status_code}: {_message(exc)}); check the server's log, or "
                               "try another --planner-protocol") from None


def _message(exc: Any) -> str:
    return str(getattr(exc, "message", exc))[:300]
