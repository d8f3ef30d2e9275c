"""The agent: multi-turn sessions, reasoning with verification and retries, replies, rvos chat."""

import subprocess
import sys

import numpy as np
import pytest

from agent.assistant import Assistant
from agent.assistant.chat import run_chat
from agent.backends.base import Backend
from agent.grounder.protocol import Grounding, ObjectPrompt, Thought, Verdict
from agent.tracker.protocol import FrameMasks


# --- control flow of the reasoning loop, with a scripted double (the real backends follow) ----
class ScriptedGrounder:
    def __init__(self, verdicts, expressions=("the red square",)):
        self.verdicts, self.expressions, self.calls = list(verdicts), list(expressions), []

    def ground(self, keyframes, instruction, history=()):
        self.calls.append(("ground", instruction))
        return Grounding(f"found {instruction}", [ObjectPrompt(1, t) for t in keyframes], {1: instruction})

    def reason(self, keyframes, instruction, history=(), feedback=None):
        self.calls.append(("reason", feedback))
        expression = self.expressions.pop(0) if len(self.expressions) > 1 else self.expressions[0]
        return Thought(f"thinking... Answer: {expression}", expression)

    def verify(self, masked, instruction, grounding):
        self.calls.append(("verify", grounding.answer))
        ok = self.verdicts.pop(0)
        return Verdict(ok, "yes" if ok else "no, that is the circle")


class SquareTracker:
    def track(self, video, prompts, keyframes, **_):
        w, h = video.size
        for t in range(len(video)):
            mask = np.zeros((h, w), bool)
            mask[2:6, 2:6] = True
            yield FrameMasks(t, {1: mask})


def scripted_session(verdicts, expressions=("the red square",)):
    grounder = ScriptedGrounder(verdicts, expressions)
    frames = [np.zeros((12, 16, 3), np.uint8) for _ in range(4)]
    return Assistant(Backend("scripted", "-", "cpu", grounder, SquareTracker(), 2)).open(frames), grounder


def kinds(reply):
    return [step.kind for step in reply.trace]


def test_auto_switches_to_reasoning_when_verification_fails():
    session, grounder = scripted_session([False, False, True], ["the blue one", "the red square"])
    reply = session.ask("the odd one out", mode="auto")
    assert kinds(reply) == ["ground", "track", "verify", "switch", "reason", "ground", "track", "verify", "retry",
                            "reason", "ground", "track", "verify", "answer"]
    assert ("reason", "no, that is the circle") in grounder.calls  # the feedback went into the retry
    assert reply.answer == "found the red square" and reply.mode == "reasoning"


def test_retries_are_bounded():
    session, _ = scripted_session([False] * 10, ["a", "b", "c", "d"])
    reply = session.ask("something", mode="reasoning", max_retries=2)
    assert kinds(reply).count("verify") == 3 and "not verified" in reply.answer


def test_direct_mode_does_not_verify():
    session, grounder = scripted_session([])
    reply = session.ask("the red square", mode="direct")
    assert kinds(reply) == ["ground", "track", "answer"] and all(c[0] == "ground" for c in grounder.calls)
    assert reply.masks(0)[1].sum() == 16 and len(session.history) == 2


# --- the lite backend on a real video --------------------------------------------------------
@pytest.fixture(scope="module")
def lite_session(lite_assistant, refdavis):
    return lite_assistant.open(refdavis / "JPEGImages" / "libby")


def test_multi_turn_on_a_real_video(lite_session, refdavis, tmp_path):
    from agent.evaluation.metrics import region_similarity
    from agent.writers import read_palette_png

    first = lite_session.ask("segment the dog")
    assert list(first.objects) == [1] and first.has_masks
    gt = read_palette_png(refdavis / "Annotations" / "libby" / "00004.png") == 1
    assert region_similarity(first.masks(4)[1], gt) > 0.6
    count = lite_session.ask("how many dogs are there?")
    assert count.answer == "I see 1 dog in this video." and not count.has_masks
    again = lite_session.ask("now the one on the left")
    assert list(again.objects) == [1]  # the same dog keeps its id
    doing = lite_session.ask("what is it doing?")  # about the dog it tracks: answered from the track, not grounded
    assert doing.mode == "describe" and doing.answer.startswith("It moves") and list(doing.objects) == [1]
    everyone = lite_session.ask("all of them")
    assert list(everyone.objects) == [1]
    none = lite_session.ask("the cat")
    assert "no cat" in none.answer and not none.has_masks
    reasoned = lite_session.ask("the animal that is running", mode="reasoning")
    assert kinds(reasoned)[:2] == ["reason", "ground"] and "verify" in kinds(reasoned) and list(reasoned.objects) == [1]
    assert len(lite_session.history) == 14
    out = first.save(tmp_path / "first")
    assert len(list((out / "masks").iterdir())) == 49 and (out / "overlay.mp4").is_file()


def test_rvos_chat_with_piped_input(refdavis, tmp_path):
    lines = f"a black feathered swan\n/trace\nhow many birds?\n/mode reasoning\nthe bird\n/save {tmp_path / 'saved'}\n/bogus\n/quit\n"
    done = subprocess.run([sys.executable, "-m", "agent", "chat", str(refdavis / "JPEGImages" / "blackswan"), "--backend", "lite"],
                          input=lines, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    replies = [line for line in done.stdout.splitlines() if line.startswith("rvos>")]
    assert replies[0].startswith("rvos> I found the black swan") and replies[1] == "rvos> I see 1 bird in this video."
    assert "[verify]" in done.stdout and "(mode: reasoning)" in done.stdout
    assert "error: unknown command /bogus" in done.stdout
    assert (tmp_path / "saved" / "result.json").is_file()


# --- the Sa2VA backend through the same loop, teacher-forced ----------------------------------
@pytest.fixture(scope="module")
def sa2va_assistant(qwen25_fixture):
    """Loaded once for this file; each test sets the teacher-forced replies it needs and gets its own session."""
    return Assistant.load("sa2va", str(qwen25_fixture / "checkpoint"), "cpu", sam2_config=str(qwen25_fixture / "sam2_tiny_test.yaml"))


@pytest.fixture
def sa2va(sa2va_assistant, qwen25_fixture):
    return sa2va_assistant, sa2va_assistant.open(qwen25_fixture / "inputs")


def test_sa2va_reasoning_with_verification(sa2va):
    assistant, session = sa2va
    assistant.backend.grounder.teacher = {"reason": "It moves right. Answer: the red square", "segment": "Sure, [SEG].",
                                          "verify": "Yes, it is the red square."}
    reply = session.ask("the shape that is moving", mode="reasoning")
    assert kinds(reply) == ["reason", "ground", "track", "verify", "answer"]
    assert reply.trace[0].detail["expression"] == "the red square" and list(reply.objects) == [1]
    assistant.backend.grounder.teacher["verify"] = "No, that is the green circle."
    rejected = session.ask("the shape that is moving", mode="reasoning", max_retries=2)
    # rejected, retried with the feedback; the same object comes back and is rejected again: it stops there,
    # with a retry left, and answers unverified
    assert kinds(rejected) == ["reason", "ground", "track", "verify", "retry", "reason", "ground", "track", "verify", "retry", "answer"]
    assert rejected.trace[9].text == "the same object came back: stopping" and "not verified" in rejected.answer


def test_sa2va_multi_turn_history_format(sa2va):
    assistant, session = sa2va
    assistant.backend.grounder.teacher = {"segment": "Sure, [SEG]."}
    session.ask("the red square", mode="direct")
    assistant.backend.grounder.teacher = {"segment": "It is [SEG]."}
    follow = session.ask("now the other one", mode="direct")
    assert follow.has_masks
    messages = assistant.backend.grounder.inputs.messages(["frame"], "next", session.history)
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert [c["type"] for c in messages[0]["content"]] == ["image", "text"]  # frames with the first turn only
    assert all(c["type"] == "text" for m in messages[1:] for c in m["content"])
    assert messages[1]["content"][0]["text"] == "Sure, [SEG]."


def test_sa2va_question_without_seg_is_text_only(sa2va):
    assistant, session = sa2va
    assistant.backend.grounder.teacher = {"segment": "There are two shapes."}
    reply = session.ask("how many shapes are there?", mode="direct")
    assert reply.answer == "There are two shapes." and not reply.has_masks and reply.objects == {}


def test_chat_loop_without_a_terminal(sa2va, tmp_path):
    assistant, session = sa2va
    assistant.backend.grounder.teacher = {"segment": "Sure, [SEG]."}
    printed = []
    run_chat(session, mode="direct", lines=["the red square", "/reset", "/save", "/mode fast", "/quit", "never read"], out=printed.append)
    assert printed[0].startswith("rvos> Sure, [SEG].") and printed[1] == "(conversation reset)"
    assert printed[2].startswith("rvos> error: /save DIR") and printed[3].startswith("rvos> error: /mode takes")
    assert len(printed) == 4 and session.history == []


def test_chat_takes_clicks_boxes_and_removals(sa2va):
    assistant, session = sa2va
    session.reset()
    assistant.backend.grounder.teacher = {"segment": "Sure, [SEG]."}
    printed = []
    lines = ["the red square", "/point 40,30,-@5 1", "/box 10,10,50,40@3", "/objects", "/remove 2",
             "/point 500,10", "/point 5,5@1 5,6@2", "/remove x", "/box 1,2,3"]
    run_chat(session, mode="direct", lines=lines, out=printed.append)
    assert printed[1].startswith("rvos> corrected object 1 with clicks -(40, 30) on frame 5")
    assert printed[2].startswith("rvos> added object 2 with box (10, 10, 50, 40) on frame 3") and "#2 box on frame 3" in printed[2]
    assert "#1" in printed[3] and "#2" in printed[3]
    assert printed[4].startswith("rvos> removed object 2") and "#2" not in printed[4]
    assert "outside the 96x80 frame" in printed[5] and "one frame at a time" in printed[6]
    assert printed[7].startswith("rvos> error: /remove ID") and printed[8].startswith("rvos> error: --box '1,2,3'")
    assert sorted(session.objects.objects) == [1]
