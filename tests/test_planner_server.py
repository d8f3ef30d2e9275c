"""End to end with a real OpenAI-compatible server and a real model: llama.cpp's server (llama-cpp-python,
built from PyPI) serving Gemma 3 270M from PyPI, one whole question on a shared video with lite.

It proves the plumbing (requests, tool calls under the server's grammar, images sent, an ending, the
trace), not the quality of a 270M base model's choices."""

from __future__ import annotations

import json
import os
import urllib.request

import httpx
import pytest

from agent.assistant.session import Session
from agent.planner import PlannerConfig
from tests.conftest import encode_video

ENDINGS = {"select", "none", "answer", "confirm"}


def _missing() -> str | None:
    from support.planner_model import model_path

    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        return "llama-cpp-python[server] is not installed (make test builds it)"
    if not model_path().is_file():
        return "the planner test model is missing: python tests/support/planner_model.py (make planner-server fetches it)"
    return None


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    reason = _missing()
    if reason:
        if os.environ.get("RVOS_REQUIRE_PLANNER_SERVER"):
            pytest.fail(reason)
        pytest.skip(reason)
    from support.planner_model import local_server

    with local_server(tmp_path_factory.mktemp("llama") / "server.log") as url:
        with urllib.request.urlopen(f"{url}/models", timeout=5) as answer:
            assert json.load(answer)["data"][0]["id"] == "gemma-3-270m"
        yield url


def test_a_whole_question_through_a_real_server(llama_server, lite_assistant, refdavis, tmp_path):
    clip = tmp_path / "swan.mp4"
    encode_video(refdavis / "JPEGImages" / "blackswan", clip, "libx264", limit=10)
    bodies, answers = [], []

    def keep(request: httpx.Request) -> None:
        bodies.append(json.loads(request.read()))

    def status(response: httpx.Response) -> None:
        answers.append(response.status_code)

    client = httpx.Client(event_hooks={"request": [keep], "response": [status]}, timeout=None)
    config = PlannerConfig(llama_server, "gemma-3-270m", max_calls=4, max_seconds=240, candidates=2, max_tokens=200, http_client=client)
    session = Session(lite_assistant.backend, clip, progress=False, planner=config)
    reply = session.ask("the black swan")

    assert reply.mode == "planner" and reply.answer
    calls = [s for s in reply.trace if s.kind == "tool"]
    assert calls and calls[0].detail["tool"] == "find" and calls[-1].detail["tool"] in ENDINGS, [str(s) for s in reply.trace]
    # the server's grammar held every call to the tools allowed then (tool_choice): calls numbered 1, 2, …,
    # the first a find, none ending the question but the last (a select before it was shown to be verified)
    assert [s.detail["call"] for s in calls] == list(range(1, len(calls) + 1))
    assert all(s.detail["tool"] not in ENDINGS - {"select"} for s in calls[:-1]), [str(s) for s in calls]
    assert sum(s.kind == "verify" and s.text.startswith("shown") for s in reply.trace) == sum(s.detail["tool"] == "select" for s in calls[:-1])
    for step in calls:
        assert {"arguments", "result", "images", "planner_s", "tool_s"} <= set(step.detail)
        assert isinstance(step.detail["arguments"], dict)
    assert reply.trace[0].kind == "plan" and len(reply.trace[0].detail["images"]) == 1
    # what crossed the wire: real requests, the keyframes as an image, every reply used or retried
    first = bodies[0]["messages"][1]["content"]
    assert any(part.get("type") == "image_url" and part["image_url"]["url"].startswith("data:image/jpeg;base64,") for part in first)
    assert 200 in answers and len(bodies) == len(answers) >= len(calls)
    # what the ending must do: select makes the chosen candidates the session's objects, with masks;
    # none and answer end the question with no object
    ending = calls[-1].detail
    if ending["tool"] in ("select", "confirm"):
        chosen = dict.fromkeys(next(s.detail["arguments"]["ids"] for s in reversed(calls) if s.detail["tool"] == "select"))
        assert len(reply.objects) == len(chosen) and reply.has_masks, ending
        assert set(session.objects.objects) == set(reply.objects)
    else:
        assert reply.objects == {} and not reply.has_masks and session.objects.objects == {}, ending
