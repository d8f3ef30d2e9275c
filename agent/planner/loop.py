"""One question, planned: the planner calls tools until one ends the question, within its budget.
Every call, its arguments, the images sent and the result land in the reply's trace."""

from __future__ import annotations

import json
import time
from typing import Any

from tqdm.auto import tqdm

from agent.planner.client import Conversation, Exchange, PlannerClient, PlannerError
from agent.planner.config import PlannerConfig
from agent.planner.session import PlanningSession
from agent.planner.tools import Toolbox
from agent.prompts import render
from agent.trace import Step
from agent.writers.outlines import draw_outlines, tile


def _opening(session: PlanningSession, question: str, config: PlannerConfig) -> Conversation:
    video = session.video
    width, height = video.size
    turns = "\n".join(f"{turn.role}: {turn.text}" for turn in session.history)
    history = render("history", "planner", turns=turns) if turns else ""
    text = render("question", "planner", question=question, history=history, frames=str(len(video)), fps=f"{video.fps or 0:g}",
                  width=str(width), height=str(height))
    overview = tile([draw_outlines(image, {}, config.image_width, caption=f"frame {t}") for t, image in sorted(session.keyframes.items())[:4]])
    return Conversation(render("system", "planner", max_calls=str(config.max_calls)), text, [overview])


def run_planner(session: PlanningSession, question: str, trace: list[Step], config: PlannerConfig, client: PlannerClient | None = None) -> Any:
    """The planner's answer to `question` on `session` (the reply its `choose` made), or a PlannerError saying what went wrong."""
    client = client or PlannerClient(config, config.http_client)
    toolbox = Toolbox(session, question, config, trace)
    conversation = _opening(session, question, config)
    trace.append(Step("plan", f"planner {config.model} at {config.url} ({client.protocol} protocol)",
                      {"message": conversation.question, "images": conversation.images}))
    deadline = time.monotonic() + config.max_seconds
    report = session.progress if callable(session.progress) else None
    with tqdm(total=config.max_calls, unit="call", desc="planner", leave=False, disable=report is not None or not session.progress) as bar:
        for call_number in range(1, config.max_calls + 1):
            bar.update(call_number - 1 - bar.n)
            if report:
                report(call_number - 1, config.max_calls, "planner")
            started = time.monotonic()
            call = client.next_call(conversation, toolbox.allowed(call_number), deadline, trace)
            asked = time.monotonic()
            outcome = toolbox.run(call.tool, call.arguments)
            arguments = json.dumps(call.arguments, ensure_ascii=False)
            first_line = outcome.text.splitlines()[0] if outcome.text else ""
            trace.append(Step("tool", f"{call.tool}({arguments}) → {first_line}", {
                "call": call_number, "tool": call.tool, "arguments": call.arguments, "result": outcome.text, "images": outcome.images,
                "planner_s": round(asked - started, 3), "tool_s": round(time.monotonic() - asked, 3)}))
            if outcome.reply is not None:
                return outcome.reply
            result = render("result", "planner", tool=call.tool, call=str(call_number), max_calls=str(config.max_calls), result=outcome.text)
            if call_number == config.max_calls - 1:
                result += "\n" + render("last_call", "planner", endings=", ".join(toolbox.endings()))
            conversation.exchanges.append(Exchange(call, result, outcome.images))
    raise PlannerError(f"the planner used all {config.max_calls} calls without ending the question (its last call failed); "
                       "raise --planner-max-calls or use a stronger model")
