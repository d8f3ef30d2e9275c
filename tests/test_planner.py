"""The planner's control flow against a scripted OpenAI-compatible endpoint (httpx's mock transport under
the real `openai` client), with the real lite backend doing the finding and tracking."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from agent.assistant.session import Session
from agent.errors import UserError
from agent.planner import PlannerConfig, PlannerError
from tests.conftest import encode_video, run_cli


def _completion(message: dict) -> dict:
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": None, **message}}]}


def tool(name: str, **arguments) -> dict:
    """A reply that calls one tool (the tools protocol)."""
    return {"tool_calls": [{"id": f"c-{name}", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}]}


def text(content: str) -> dict:
    return {"content": content}


class ScriptedPlanner:
    """Answers each chat-completions request with the next scripted reply (a message, or an httpx.Response,
    or an exception to raise), and keeps the requests."""

    def __init__(self, *replies):
        self.replies, self.requests = list(replies), []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(json.loads(request.content))
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply if isinstance(reply, httpx.Response) else httpx.Response(200, json=_completion(reply))

    def config(self, **options) -> PlannerConfig:
        return PlannerConfig("http://planner.test/v1", "scripted", http_client=httpx.Client(transport=httpx.MockTransport(self)), **options)


def _images(message: dict) -> int:
    content = message.get("content")
    return sum(1 for part in content if part.get("type") == "image_url") if isinstance(content, list) else 0


@pytest.fixture(scope="module")
def swan_session(lite_assistant, refdavis, tmp_path_factory):
    """Eight frames of blackswan: enough for tracks, short enough to find in seconds."""
    path = tmp_path_factory.mktemp("planner") / "swan8.mp4"
    encode_video(refdavis / "JPEGImages" / "blackswan", path, "libx264", limit=8)
    return lite_assistant.open(path, progress=False)


def _session(swan_session, planner: ScriptedPlanner, **options) -> Session:
    return Session(swan_session.backend, swan_session.video, progress=False, planner=planner.config(**{"candidates": 2, **options}))


def test_find_tracks_every_candidate_through_the_video(swan_session):
    found = swan_session.find("swan")
    assert found.numbers and len(found.rle) == len(swan_session.video)
    first = found.masklets[found.numbers[0]]
    assert first.frames, "the best candidate is visible somewhere"
    mask = found.masks(first.frames[0])[first.number]
    ys, xs = np.nonzero(mask)
    assert first.boxes[first.frames[0]] == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert f"#{first.number} " in found.table() and "visible on frames" in found.table()
    assert found.image(swan_session.keyframes).width == 2 * 448
    moved = found.renumbered(10)
    assert moved.numbers == [n + 10 for n in found.numbers]
    assert {p.object_id for p in moved.grounding.prompts} <= set(moved.numbers)
    assert np.array_equal(moved.masks(first.frames[0])[first.number + 10], mask)


def test_find_then_select_gives_the_candidates_tracks(swan_session, tmp_path):
    found = swan_session.find("swan", limit=2)
    planner = ScriptedPlanner(tool("find", phrase="swan"), tool("select", ids=[1], reason="the black swan swimming"), tool("confirm"))
    session = _session(swan_session, planner)
    reply = session.ask("the black swan")
    assert reply.mode == "planner" and reply.answer == "the black swan swimming"
    assert list(reply.objects) == [1]
    for frame in (0, len(session.video) // 2, len(session.video) - 1):
        assert np.array_equal(reply.masks(frame)[1], found.masks(frame)[1])
    assert session.objects.objects[1].description.startswith("swan: ")  # kept as a session object
    first, second, third = planner.requests
    assert first["tool_choice"] == {"type": "function", "function": {"name": "find"}}
    assert _images(first["messages"][1]) == 1, "the keyframes go with the question"
    assert first["messages"][1]["content"][0]["text"].count("the black swan") == 1
    assert {t["function"]["name"] for t in second["tools"]} == {"find", "inspect", "select", "none", "answer"}
    assert second["tool_choice"] == "required"
    roles = [m["role"] for m in second["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    assert "#1 " in second["messages"][3]["content"] and _images(second["messages"][4]) == 1
    # verification: the selection is shown over the whole video, and only then may it be confirmed
    assert {t["function"]["name"] for t in third["tools"]} == {"find", "inspect", "confirm", "select", "none", "answer"}
    assert "check the selection" in third["messages"][-2]["content"] and _images(third["messages"][-1]) == 1
    steps = [s for s in reply.trace if s.kind == "tool"]
    assert [s.detail["tool"] for s in steps] == ["find", "select", "confirm"]
    shown, confirmed = [s for s in reply.trace if s.kind == "verify"]
    last = len(session.video) - 1
    assert shown.detail["ids"] == [1] and shown.detail["frames"][0] == 0 and shown.detail["frames"][-1] == last
    assert confirmed.text == "confirmed #1"
    assert steps[0].detail["arguments"] == {"phrase": "swan"} and len(steps[0].detail["images"]) == 1
    assert "#1 " in steps[0].detail["result"]
    assert reply.trace[0].kind == "plan" and reply.trace[-1].kind == "answer"
    saved = reply.save(tmp_path / "saved")
    trace = json.loads((saved / "result.json").read_text())["trace"]
    find = next(step for step in trace if step.get("tool") == "find")
    assert find["arguments"] == {"phrase": "swan"} and "#1 " in find["result"]
    assert find["images"] and (saved / find["images"][0]).is_file()


def test_verification_can_change_the_selection_and_can_be_turned_off(swan_session):
    found = swan_session.find("swan", limit=2)
    assert len(found.masklets) == 2
    # shown #1, the planner selects #2 instead (shown again), then confirms #2: the masks are #2's
    planner = ScriptedPlanner(tool("find", phrase="swan"), tool("select", ids=[1], reason="first"), tool("select", ids=[2], reason="no, the other"),
                              tool("confirm"))
    reply = _session(swan_session, planner).ask("the swan")
    assert reply.answer == "no, the other" and list(reply.objects) == [1]
    for frame in range(len(swan_session.video)):
        assert np.array_equal(reply.masks(frame)[1], found.masks(frame)[2]), frame
    assert [s.text.split(" on ")[0] for s in reply.trace if s.kind == "verify"] == ["shown #1", "shown #2", "confirmed #2"]
    # shown, then nothing fits: no object
    planner = ScriptedPlanner(tool("find", phrase="swan"), tool("select", ids=[1], reason="it"), tool("none", reason="not a swan after all"))
    reply = _session(swan_session, planner).ask("the swan")
    assert reply.answer == "not a swan after all" and not reply.objects
    # selecting the shown ids again confirms them
    planner = ScriptedPlanner(tool("find", phrase="swan"), tool("select", ids=[1], reason="it"), tool("select", ids=[1], reason="it"))
    reply = _session(swan_session, planner).ask("the swan")
    assert list(reply.objects) == [1] and [s.text for s in reply.trace if s.kind == "verify"][-1] == "confirmed #1"
    # off: select ends the question at once, no image of the selection
    planner = ScriptedPlanner(tool("find", phrase="swan"), tool("select", ids=[1], reason="it"))
    reply = _session(swan_session, planner, verify=False).ask("the swan")
    assert list(reply.objects) == [1] and len(planner.requests) == 2 and not any(s.kind == "verify" for s in reply.trace)


def test_inspect_then_answer_ends_without_masks(swan_session):
    planner = ScriptedPlanner(tool("find", phrase="bird"), tool("inspect", ids=[1], frames=[0, 5]), tool("inspect", ids=[99]),
                              tool("inspect", ids=[1], frames=[500]), tool("answer", text="It is swimming to the right."))
    session = _session(swan_session, planner)
    reply = session.ask("what is the swan doing?")
    assert reply.answer == "It is swimming to the right." and not reply.objects and not reply.has_masks
    inspect = [s for s in reply.trace if s.kind == "tool"][1]
    assert inspect.detail["result"].count("frame ") == 2 and len(inspect.detail["images"]) == 1
    assert _images(planner.requests[2]["messages"][-1]) == 1, "the crops are sent"
    # the schemas sent name only the known candidates and the video's frames: a constraining server cannot
    # produce others, and a reply that does is sent back
    tools = {t["function"]["name"]: t["function"]["parameters"]["properties"] for t in planner.requests[2]["tools"]}
    known = [int(line.split()[0][1:]) for line in inspect.detail["result"].splitlines()]
    assert tools["inspect"]["ids"]["items"]["enum"] == tools["select"]["ids"]["items"]["enum"] == [1, 2][:len(tools["select"]["ids"]["items"]["enum"])]
    assert known == [1] and tools["inspect"]["frames"]["items"]["maximum"] == len(swan_session.video) - 1
    retries = [s.text for s in reply.trace if s.kind == "retry"]
    assert len(retries) == 2 and "99 is not one of" in retries[0] and "500 is greater than the maximum" in retries[1], retries
    assert [s.detail["tool"] for s in reply.trace if s.kind == "tool"] == ["find", "inspect", "answer"]


def test_unusable_replies_are_sent_back_then_bounded(swan_session):
    planner = ScriptedPlanner(tool("find", phrase="swan"), tool("select", ids="one"), text("I think it is #1."),
                              tool("select", ids=[1], reason="it"), tool("confirm"))
    reply = _session(swan_session, planner, protocol="tools").ask("the swan")  # (auto would move to json on a text reply)
    assert list(reply.objects) == [1]
    retries = [s for s in reply.trace if s.kind == "retry"]
    assert len(retries) == 2 and "do not fit its schema" in retries[0].text and "no tool call" in retries[1].text
    last = planner.requests[-2]["messages"]  # (the last request is the verification's)
    assert "could not be used" in last[-1]["content"] and "could not be used" in last[-3]["content"]

    planner = ScriptedPlanner(tool("find", phrase="swan"), tool("nothing"), tool("nothing"), tool("nothing"))
    session = _session(swan_session, planner)
    with pytest.raises(PlannerError, match="after 2 retries.*'nothing' cannot be called now"):
        session.ask("the swan")
    assert not session.replies and not session.objects.objects and not session.history, "a failed question changes nothing"


def test_the_budget_forces_an_ending(swan_session):
    planner = ScriptedPlanner(tool("find", phrase="swan"), tool("select", ids=[1], reason="it"))
    _session(swan_session, planner, max_calls=2).ask("the swan")
    assert {t["function"]["name"] for t in planner.requests[1]["tools"]} == {"select", "none", "answer"}

    planner = ScriptedPlanner(tool("find", phrase="swan"), tool("find", phrase="bird"), tool("none", reason="no such thing"))
    reply = _session(swan_session, planner, max_calls=3).ask("the purple swan")
    assert reply.answer == "no such thing" and not reply.objects
    assert "One call is left: end now with one of select, none, answer." in planner.requests[2]["messages"][-2]["content"]


def test_auto_moves_to_json_when_the_server_has_no_tool_calling(swan_session):
    refused = httpx.Response(400, json={"error": {"message": "tools are not supported"}})
    llama_style = httpx.Response(500, json={"error": {"message": "response_format: Input should be 'text' or 'json_object'"}})
    planner = ScriptedPlanner(refused, llama_style, llama_style, text(json.dumps({"tool": "find", "arguments": {"phrase": "swan"}})),
                              text(json.dumps({"tool": "select", "arguments": {"ids": [1], "reason": "it"}})),
                              text(json.dumps({"tool": "confirm", "arguments": {}})))
    reply = _session(swan_session, planner).ask("the swan")
    assert list(reply.objects) == [1]
    # the client tries a 5xx once more itself; then the older llama.cpp dialect
    assert "tools" in planner.requests[0] and planner.requests[1]["response_format"]["type"] == "json_schema"
    schema = planner.requests[3]["response_format"]["schema"]
    assert planner.requests[3]["response_format"]["type"] == "json_object"
    assert [option["properties"]["tool"]["const"] for option in schema["anyOf"]] == ["find"]
    assert "tools" not in planner.requests[4] and 'two keys: "tool"' in planner.requests[4]["messages"][0]["content"]
    assert sum(s.kind == "switch" for s in reply.trace) == 2

    planner = ScriptedPlanner(text("Sure! Let me look."), text(json.dumps({"tool": "find", "arguments": {"phrase": "swan"}})),
                              text(json.dumps({"tool": "none", "arguments": {"reason": "none"}})),
                              text(json.dumps({"tool": "find", "arguments": {"phrase": "swan"}})),
                              text(json.dumps({"tool": "none", "arguments": {"reason": "none"}})))
    session = _session(swan_session, planner)
    reply = session.ask("the swan")
    assert "response_format" in planner.requests[1] and reply.trace[1].kind == "switch"
    again = session.ask("the swan again")  # what the session learned of the server lasts: no second switch
    assert "tools" not in planner.requests[3] and not any(step.kind == "switch" for step in again.trace)


@pytest.mark.parametrize("reply, message", [
    (httpx.Response(401, json={"error": {"message": "bad key"}}), "refused the key .401.; set RVOS_PLANNER_API_KEY"),
    (httpx.Response(404, json={"error": {"message": "no such model"}}), "has no model 'scripted'"),
    (httpx.ReadTimeout("slow"), "did not answer within"),
    (httpx.ConnectError("refused"), "cannot be reached"),
])
def test_endpoint_failures_are_one_clear_line(swan_session, reply, message):
    planner = ScriptedPlanner(reply, reply, reply)
    with pytest.raises(PlannerError, match=message):
        _session(swan_session, planner).ask("the swan")


def test_config_and_command_line_refusals(capsys, swan_clip):
    with pytest.raises(UserError, match="http"):
        PlannerConfig("localhost:8000", "m").check()
    with pytest.raises(UserError, match="--planner-model"):
        PlannerConfig("http://127.0.0.1:8000/v1", "").check()
    code, _, err = run_cli(capsys, "chat", str(swan_clip), "--planner", "127.0.0.1:8000", "--planner-model", "m")
    assert code == 2 and "--planner must be the server's http(s) address" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "eval", str(swan_clip), "--out", "x", "--planner-model", "m")
    assert code == 2 and "--planner-model needs --planner URL" in err


def test_mode_planner_needs_a_planner(swan_session):
    with pytest.raises(UserError, match="needs a planner"):
        swan_session.ask("the swan", mode="planner")


def test_the_web_page_asks_the_planner(lite_assistant, swan_session):
    import threading

    from agent.assistant import Assistant
    from agent.serve.workspace import Limits, Workspace

    planner = ScriptedPlanner(tool("find", phrase="swan"), tool("select", ids=[1], reason="the swan"), tool("confirm"))
    workspace = Workspace(Assistant(lite_assistant.backend, planner.config(candidates=1)), Limits(), threading.Lock())
    workspace.open_upload(swan_session.video.path)
    progress = []
    reply = workspace.ask("the swan", "auto", lambda done, total, what: progress.append(what))
    assert reply.mode == "planner" and list(reply.objects) == [1] and "planner" in progress and "find" in progress
    how = workspace.messages[-1]
    assert how["metadata"]["title"] == "How (planner)" and 'find({"phrase": "swan"})' in how["content"]


def test_eval_asks_each_expression_through_the_planner(lite_assistant, refdavis, tmp_path):
    from agent.evaluation.datasets import read_dataset
    from agent.evaluation.runner import evaluate_expression

    expression = next(e for e in read_dataset(refdavis).expressions if e.video == "blackswan")
    planner = ScriptedPlanner(tool("find", phrase="swan"), tool("select", ids=[1], reason="the swan"), tool("confirm"))
    record = evaluate_expression(lite_assistant.backend, expression, tmp_path, planner.config(candidates=1))
    assert record["answer"] == "the swan" and record["objects"] == 1 and record["scores"]["JF"] > 0.5
    assert len(list((tmp_path / "predictions" / "blackswan" / expression.exp_id).glob("*.png"))) == record["frames"]
    planner = ScriptedPlanner(httpx.ConnectError("refused"), httpx.ConnectError("refused"))
    from agent.evaluation.runner import evaluate_video

    with pytest.raises(PlannerError, match="cannot be reached"):  # the same for every expression: stop, say it once
        evaluate_video(lite_assistant.backend, [e for e in read_dataset(refdavis).expressions if e.video == "libby"], tmp_path / "b",
                       planner.config())
    assert not (tmp_path / "b" / "predictions").exists() and not (tmp_path / "b" / "failures").exists()


def test_crops_on_frames_where_the_candidate_is_not_visible():
    from PIL import Image

    from agent.planner.candidates import collect
    from agent.grounder.protocol import Grounding, ObjectPrompt
    from agent.tracker.protocol import FrameMasks
    from agent.video.source import VideoSource

    mask = np.zeros((40, 60), bool)
    mask[10:20, 30:50] = True
    frames = [FrameMasks(0, {1: mask}), FrameMasks(1, {1: np.zeros_like(mask)}), FrameMasks(2, {1: np.zeros_like(mask)})]
    found = collect("box", Grounding("", [ObjectPrompt(1, 0, box=(30, 10, 50, 20))], {1: "box"}), frames, (60, 40))
    video = VideoSource.open([Image.new("RGB", (60, 40)) for _ in range(3)])
    image, shown = found.crops(video, [1], frames=[1, 2])  # gone there: cropped where it was
    assert shown == [1, 2] and image.width == 448
