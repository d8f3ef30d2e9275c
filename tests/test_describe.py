"""The other direction: words about an object (issue 27). What a track measures (synthetic videos with a known
motion), lite's descriptions of real objects from their true masks, the session answering questions about objects
it tracks without tracking again, `rvos describe` (its checks before a model loads, --mask, --object-from), and
Sa2VA: the region-prompt path reproducing the official single-image case, the crops path of a family without
region prompts, and grounded captions linked to masks (forced answers: the fixtures' weights are random)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.grounder.object_facts import best_views, measure
from agent.grounder.questions import named_objects, question_kind
from agent.grounder.visual import read_mask_file
from agent.pipeline import Pipeline
from agent.video import VideoSource
from tests.conftest import FIXTURES, require_shared, run_cli

W, H, SIDE = 160, 120, 24


def synthetic(step: tuple[int, int], camera: tuple[int, int] = (0, 0), frames: int = 12, hidden: range = range(0)):
    """A textured square moving by `step` px a frame over a textured background that itself moves by `camera`
    (a panning camera): its frames and the square's masks (empty on the `hidden` frames)."""
    rng = np.random.default_rng(0)
    ground = (rng.random((H * 2, W * 2)) * 255).astype(np.uint8)
    ground = np.asarray(Image.fromarray(ground).resize((W * 2 // 3, H * 2 // 3)).resize((W * 2, H * 2), Image.BILINEAR))
    patch = np.asarray(Image.fromarray((rng.random((6, 6)) * 255).astype(np.uint8)).resize((SIDE, SIDE), Image.BILINEAR))
    images, masks = [], []
    for t in range(frames):
        oy, ox = H // 2 + camera[1] * t, W // 2 + camera[0] * t
        frame = ground[oy : oy + H, ox : ox + W].copy() if camera != (0, 0) else ground[:H, :W].copy()
        x, y = 50 + step[0] * t, 50 + step[1] * t
        mask = np.zeros((H, W), bool)
        if t not in hidden:
            frame[y : y + SIDE, x : x + SIDE] = patch
            mask[y : y + SIDE, x : x + SIDE] = True
        images.append(Image.fromarray(np.stack([frame] * 3, -1)))
        masks.append(mask)
    return list(enumerate(images)), masks


def test_describe_facts_of_a_moving_and_a_still_object():
    frames, masks = synthetic((4, 0), hidden=range(8, 10))
    facts = measure(frames, masks)
    assert facts.motion == "moving" and facts.direction == "to the right"
    assert facts.visible == [0, 1, 2, 3, 4, 5, 6, 7, 10, 11] and facts.hidden == [(8, 9)]
    assert facts.size == "small" and facts.position == "in the middle"
    frames, masks = synthetic((0, 0))
    assert measure(frames, masks).motion == "still"
    frames, masks = synthetic((0, -3))
    assert measure(frames, masks).direction == "up"


def test_describe_facts_see_motion_against_the_background():
    """A camera that pans with the object: the object stays put on the screen but moves against the scene; and one
    that pans past a still object: the object moves on the screen but not against the scene."""
    frames, masks = synthetic((0, 0), camera=(3, 0))  # the object stays where it is on the screen, the scene flows past
    followed = measure(frames, masks)
    assert followed.motion == "moving" and followed.direction == "to the right"
    frames, masks = synthetic((-3, 0), camera=(3, 0))  # the square moves with the scene: still in the world
    assert measure(frames, masks).motion == "still"


def test_describe_best_views_spread_over_the_track():
    masks = [np.zeros((4, 4), bool) for _ in range(9)]
    for t, size in enumerate([1, 3, 2, 1, 1, 4, 2, 2, 1]):
        masks[t][:size, :1] = True
    masks[4][:] = False  # not seen
    assert best_views(masks, 3) == [1, 5, 7]  # the largest of [0, 1, 2], [3, 5, 6], [7, 8]


def test_describe_question_kinds():
    assert [question_kind(q) for q in ["what is object 2 doing?", "where is it?", "when is #1 visible?",
                                       "how many objects are there?", "what is this?", "describe object 3", "the dog on the left"]] \
        == ["doing", "where", "when", "count", "what", "describe", None]
    assert named_objects("is region 1 holding object #2?") == [1, 2]
    assert question_kind("the car moving left") is None  # a referring expression, not a question about a car


EXPECTED = {"blackswan": ("bird", "black", None), "libby": ("dog", None, "moving"), "car-shadow": ("car", None, "moving")}


@pytest.mark.parametrize("video", sorted(EXPECTED))
def test_describe_lite_names_class_colour_and_motion_from_true_masks(lite_backend, refdavis, video):
    """lite's description of a real object from its true masks (the first 16 frames) says what its expression says."""
    names = sorted(p.stem for p in (refdavis / "Annotations" / video).glob("*.png"))[:16]
    source = VideoSource.open(refdavis / "JPEGImages" / video).span(range(16))
    masks = [read_mask_file(refdavis / "Annotations" / video / f"{n}.png")[1] for n in names]
    reply = Pipeline(lite_backend, source, progress=False).describe(masks)
    record, (kind, colour, motion) = reply.details["description"], EXPECTED[video]
    assert record["name"] == kind or record["details"]["identity"]["detector"]["class"] == kind, reply.answer
    assert f" {kind}" in reply.answer and reply.mode == "describe"
    if colour:
        assert colour in record["details"]["colours"], reply.answer
    if motion:
        assert record["facts"]["motion"] == motion, reply.answer
    assert "seen on all 16 frames" in reply.answer and len(record["frames"]) == 3
    assert reply.masks(0)[1].sum() == masks[0].sum()  # the reply carries the described object's masks
    where = Pipeline(lite_backend, source, progress=False).describe(masks, "where is it?").answer
    assert where.startswith("It is") and "of the frame" in where and kind not in where  # only the sentence asked for


@pytest.fixture(scope="module")
def swan_frames(refdavis, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("describe") / "swan"
    folder.mkdir()
    for path in sorted((refdavis / "JPEGImages" / "blackswan").glob("*.jpg"))[:8]:
        shutil.copy(path, folder / path.name)
    return folder


def test_describe_session_answers_questions_about_its_objects_without_tracking_again(lite_assistant, swan_frames):
    session = lite_assistant.open(swan_frames, progress=False)
    first = session.ask("a black swan", mode="direct")
    assert first.answer.startswith("I found the black swan") and list(first.objects) == [1]
    assert "candidate(s)" in first.trace[0].text  # the scores stay in the trace
    tracker, calls = session.backend.tracker, []
    original = tracker.track
    tracker.track = lambda *a, **k: calls.append(a) or original(*a, **k)
    try:
        doing = session.ask("what is it doing?")
        where = session.ask("where is object 1?")
        named = session.ask("what is the swan doing?")  # named by the words that found it
        count = session.ask("how many objects are there?")
        described = session.describe(1)
    finally:
        tracker.track = original
    assert calls == [], "a question about a tracked object tracked again"
    assert doing.mode == where.mode == named.mode == described.mode == "describe"
    assert doing.answer.startswith("It ") and "frame" not in doing.answer and doing.answer == named.answer
    assert "of the frame" in where.answer
    assert count.answer.startswith("I am following 1 object(s)")
    assert "bird" in described.answer and "seen on all 8 frames" in described.answer
    assert session.history[-1].text == described.answer
    new = session.ask("the swan on the left", mode="direct")  # a request, not a question about object 1
    assert new.mode == "direct"


def test_describe_command_checks_before_loading(capsys, swan_frames, tmp_path, monkeypatch):
    import agent.backends

    monkeypatch.setattr(agent.backends, "load_backend", lambda *a, **k: pytest.fail("a model loaded before the checks"))
    code, _, err = run_cli(capsys, "describe", swan_frames, "what is it doing?", "--backend", "lite")
    assert code == 2 and "say which object" in err
    code, _, err = run_cli(capsys, "describe", swan_frames, "--box", "1,1,50,50", "--box", "60,60,90,90", "--backend", "lite")
    assert code == 2 and "one object" in err
    code, _, err = run_cli(capsys, "describe", swan_frames, "--object-from", str(tmp_path / "nothing.json:1"), "--backend", "lite")
    assert code == 2 and "cannot read" in err and "Traceback" not in err


def test_describe_command_on_a_mask_and_on_an_earlier_result(capsys, swan_frames, refdavis, tmp_path):
    first = refdavis / "Annotations" / "blackswan" / "00000.png"
    code, out, err = run_cli(capsys, "describe", swan_frames, "--mask", first, "--backend", "lite", "--json")
    assert code == 0, err
    described = json.loads(out)
    assert described["description"]["name"] == "bird" and described["description"]["facts"]["num_frames"] == 8
    assert described["answer"].startswith("It is a black") and "black" in described["description"]["details"]["colours"]
    code, _, err = run_cli(capsys, "segment", swan_frames, "--mask", first, "--backend", "lite", "--out", tmp_path / "seg", "--no-overlay")
    assert code == 0, err
    code, out, err = run_cli(capsys, "describe", swan_frames, "what is it doing?", "--object-from", f"{tmp_path / 'seg' / 'result.json'}:1",
                             "--backend", "lite")
    assert code == 0, err
    assert out.startswith("answer: It ")
    code, _, err = run_cli(capsys, "describe", swan_frames, "--object-from", f"{tmp_path / 'seg' / 'result.json'}:7", "--backend", "lite")
    assert code == 2 and "no object 7" in err


# --- Sa2VA -------------------------------------------------------------------------------------
VP_FIXTURE = FIXTURES / "sa2va-vp-internvl-tiny"


@pytest.fixture(scope="module")
def internvl():
    from agent.backends.sa2va.spec import load_sa2va

    folder = require_shared(VP_FIXTURE, "the Sa2VA region-prompt fixture (sa2va-vp-internvl-tiny)")
    backend = load_sa2va(str(folder / "checkpoint"), "cpu", sam2_config=folder / "sam2_tiny_test.yaml")
    backend.grounder.record_logits = True
    return folder, backend


def test_describe_region_prompt_path_reproduces_the_official_case(internvl):
    """Pipeline.describe on a one-frame video, the case's region as the object: the same prompt and answer logits as
    the official single-image inference with `mask_prompts` (the fixture's `one_region`)."""
    from tests.test_region_prompts import CLOSE, case_inputs, expected, model_inputs

    folder, backend = internvl
    run, masks = case_inputs(folder, "one_region")
    backend.grounder.teacher["describe"] = run["forced_answer"]
    try:
        with model_inputs(backend.grounder) as seen:
            reply = Pipeline(backend, folder / "inputs" / "image.png", progress=False).describe(masks, "What is region1?")
    finally:
        backend.grounder.teacher.pop("describe")
    prompt_ids = expected(folder, "one_region", "input_ids")
    np.testing.assert_array_equal(seen["input_ids"][: len(prompt_ids)], prompt_ids)
    assert reply.answer == run["prediction"].removesuffix("<|im_end|>")
    details = reply.details["description"]["details"]
    assert details["method"] == "region prompt" and details["region_pixels"] == run["region_pixels"] and reply.keyframes == [0]


@pytest.fixture(scope="module")
def qwen25(qwen25_fixture):
    from tests.test_sa2va_fixture import load_fixture

    return load_fixture(qwen25_fixture)


def test_describe_crops_path_for_a_family_without_region_prompts(qwen25, qwen25_fixture):
    backend = qwen25
    backend.grounder.teacher["describe"] = "A red square moving right."
    video = VideoSource.open(qwen25_fixture / "inputs")
    masks = []
    for t in range(len(video)):
        pixels = np.asarray(video.frame(t)).astype(int)
        masks.append((pixels[..., 0] > 150) & (pixels[..., 1] < 100) & (pixels[..., 2] < 100))  # its red square
    try:
        reply = Pipeline(backend, video, progress=False).describe(masks, "what is it doing?")
    finally:
        backend.grounder.teacher.pop("describe")
    assert reply.answer.endswith("A red square moving right.") and "no region prompts" in reply.answer
    details = reply.details["description"]["details"]
    assert details["method"] == "crops" and "what is it doing?" in details["request"] and len(reply.keyframes) == min(3, len(video))


def test_describe_grounded_caption_links_phrases_to_masks(qwen25, qwen25_fixture, tmp_path):
    from agent.assistant import Assistant

    backend = qwen25
    backend.grounder.teacher["segment"] = "<p>A red square</p> [SEG] moves past <p>a blue disc</p> [SEG]."
    session = Assistant(backend).open(qwen25_fixture / "inputs", progress=False)
    try:
        reply = session.caption()
    finally:
        backend.grounder.teacher.pop("segment")
    assert reply.objects == {1: "A red square", 2: "a blue disc"} and reply.mode == "caption"
    assert reply.details["caption"] == {"text": "A red square moves past a blue disc.",
                                        "phrases": [{"phrase": "A red square", "object": 1}, {"phrase": "a blue disc", "object": 2}]}
    assert all(reply.masks(0)[i].shape == backend_size(qwen25_fixture) for i in (1, 2))
    assert set(session.objects.objects) == {1, 2} and session.objects.objects[2].description == "a blue disc"
    saved = json.loads((reply.save(tmp_path / "caption") / "result.json").read_text())
    assert saved["caption"]["phrases"][1] == {"phrase": "a blue disc", "object": 2}
    assert [o["id"] for o in saved["objects"]] == [1, 2]


def backend_size(folder: Path) -> tuple[int, int]:
    width, height = VideoSource.open(folder / "inputs").size
    return height, width


def test_describe_lite_caption_names_what_it_sees_each_phrase_an_object(lite_assistant, swan_frames, tmp_path, capsys):
    code, out, err = run_cli(capsys, "describe", swan_frames, "--backend", "lite", "--json", "--out", tmp_path / "caption")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["mode"] == "caption" and shown["answer"].startswith("I see a bird")
    links = shown["caption"]["phrases"]
    assert links[0] == {"phrase": "a bird", "object": 1} and [link["object"] for link in links] == list(range(1, len(links) + 1))
    saved = json.loads((tmp_path / "caption" / "result.json").read_text())
    assert saved["caption"] == shown["caption"] and saved["objects"][0] == {"id": 1, "produced_by": "a bird"}
    assert any("1" in frame["objects"] for frame in saved["frames"])  # the phrase's object is tracked


def test_describe_a_sa2va_session_object_and_a_question_about_it(qwen25, qwen25_fixture):
    """`session.describe` and a chat question on the Sa2VA fixture: the object the session tracks, described from its
    track (the tracker is not called again), through the crops path of a family without region prompts."""
    from agent.assistant import Assistant

    backend = qwen25
    backend.grounder.teacher.update(segment="Sure, [SEG].", describe="It is a red square.")
    try:
        session = Assistant(backend).open(qwen25_fixture / "inputs", progress=False)
        session.ask("the red square", mode="direct")
        tracker, calls = backend.tracker, []
        original = tracker.track
        tracker.track = lambda *a, **k: calls.append(a) or original(*a, **k)
        try:
            described = session.describe(1)
            asked = session.ask("what is object 1 doing?")
        finally:
            tracker.track = original
    finally:
        backend.grounder.teacher.pop("segment")
        backend.grounder.teacher.pop("describe")
    assert calls == [] and described.mode == asked.mode == "describe"
    assert described.answer.endswith("It is a red square.") and "no region prompts" in described.answer
    assert "what is object 1 doing?" in asked.details["description"]["details"]["request"]
