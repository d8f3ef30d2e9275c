"""One path, every door: the same question on a shared video through `rvos segment` (its function and the command),
a session's `ask` and `rvos eval` gives identical masks, for lite and for a Sa2VA fixture, in every mode.

The planner mode's planner is scripted (the same tool calls for each door); everything else is the real backend.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.assistant import Assistant, Session
from agent.evaluation.runner import EvalJob, run_evaluation
from agent.pipeline import DEFAULT_MODE, MODES, segment
from agent.masks import decode_rle
from tests.conftest import run_cli
from tests.test_planner import ScriptedPlanner, tool
from tests.test_sa2va_fixture import load_fixture

VIDEO, FRAMES = "blackswan", 6
QUESTION = "a black feathered swan"


@pytest.fixture(scope="module")
def dataset(refdavis, tmp_path_factory) -> Path:
    """The first frames of one shared video as a generic-layout dataset with one expression: what `rvos eval` reads."""
    root = tmp_path_factory.mktemp("one-path") / "data"
    names = sorted(p.stem for p in (refdavis / "JPEGImages" / VIDEO).glob("*.jpg"))[:FRAMES]
    for kind, suffix in (("JPEGImages", ".jpg"), ("Annotations", ".png")):
        (root / kind / VIDEO).mkdir(parents=True)
        for name in names:
            shutil.copy(refdavis / kind / VIDEO / f"{name}{suffix}", root / kind / VIDEO / f"{name}{suffix}")
    meta = {"videos": {VIDEO: {"expressions": {"0": {"exp": QUESTION, "obj_id": "1"}}, "frames": names}}}
    (root / "meta_expressions.json").write_text(json.dumps(meta))
    return root


def output_masks(folder: Path) -> list[dict[int, np.ndarray]]:
    """Per frame: object id → mask, from a `rvos segment` output's result.json."""
    result = json.loads((folder / "result.json").read_text())
    return [{int(i): decode_rle(o["rle"]) for i, o in frame["objects"].items()} for frame in result["frames"]]


def eval_masks(out: Path, names: list[str]) -> list[np.ndarray]:
    return [np.array(Image.open(out / "predictions" / VIDEO / "0" / f"{name}.png")) > 0 for name in names]


def assert_same(segmented: list[dict], asked, evaluated: list[np.ndarray]) -> None:
    assert len(segmented) == len(evaluated) == FRAMES
    assert any(m.any() for frame in segmented for m in frame.values()), "the question found nothing: a weak check"
    for t, masks in enumerate(segmented):
        assert masks.keys() == asked.masks(t).keys(), f"frame {t}: objects differ"
        for object_id, mask in masks.items():
            assert np.array_equal(mask, asked.masks(t)[object_id]), f"frame {t}, object {object_id}: segment ≠ ask"
        union = np.zeros_like(evaluated[t])
        for mask in masks.values():
            union |= mask
        assert np.array_equal(union, evaluated[t]), f"frame {t}: segment ≠ eval"


def swan_planner() -> ScriptedPlanner:
    return ScriptedPlanner(tool("find", phrase="swan"), tool("select", ids=[1], reason="the black swan"), tool("confirm"))


PLANNER_OPTIONS = {"candidates": 2}  # each door tracks what one find returns: two are enough to choose from


def through_every_door(backend, dataset: Path, tmp_path: Path, mode: str) -> None:
    video = dataset / "JPEGImages" / VIDEO
    names = sorted(p.stem for p in video.iterdir())
    planners = [swan_planner().config(**PLANNER_OPTIONS) if mode == "planner" else None for _ in range(3)]
    run = segment(video, QUESTION, backend, tmp_path / "segment", mode=mode, planner=planners[0], progress=False)
    session = Session(backend, video, progress=False, planner=planners[1])
    asked = session.ask(QUESTION) if mode in (DEFAULT_MODE, "planner") else session.ask(QUESTION, mode=mode)  # the default as is
    job = EvalJob(str(dataset), "generic", None, backend.name, str(tmp_path / "eval"), planner=planners[2], mode=mode)
    report = run_evaluation(job, progress=False, backend=backend)
    assert report["expressions_done"] == 1 and not report["failures"]
    assert run.reply.mode == asked.mode and run.answer == asked.answer
    assert_same(output_masks(run.out), asked, eval_masks(tmp_path / "eval", names))
    record = json.loads((tmp_path / "eval" / "scores" / VIDEO / "0.json").read_text())
    assert record["answer"] == asked.answer and record["mode"] == asked.mode


@pytest.mark.parametrize("mode", MODES)
def test_lite_gives_the_same_masks_through_every_door(lite_backend, dataset, tmp_path, mode):
    through_every_door(lite_backend, dataset, tmp_path, mode)


@pytest.fixture(scope="module")
def sa2va_backend(qwen25_fixture):
    backend = load_fixture(qwen25_fixture)
    # every step's answer forced (the tiny model's weights are random): grounding finds one object, reasoning
    # settles on an expression, verification says no, so `auto` switches to reasoning and retries stop
    backend.grounder.teacher = {"segment": "Sure, [SEG].", "reason": "The swan is the black bird. Expression: the black swan",
                                "verify": "No, that is not it."}
    return backend


@pytest.mark.parametrize("mode", MODES)
def test_sa2va_gives_the_same_masks_through_every_door(sa2va_backend, dataset, tmp_path, mode):
    through_every_door(sa2va_backend, dataset, tmp_path, mode)


def test_the_commands_take_the_default_mode_and_agree(lite_backend, dataset, tmp_path, capsys):
    """`rvos segment` and `rvos eval` with no --mode run the default mode, as a session's `ask` does."""
    video = dataset / "JPEGImages" / VIDEO
    names = sorted(p.stem for p in video.iterdir())
    code, out, err = run_cli(capsys, "segment", video, QUESTION, "--out", tmp_path / "segment", "--backend", "lite")
    assert code == 0, err
    code, _, err = run_cli(capsys, "eval", dataset, "--out", tmp_path / "eval", "--backend", "lite")
    assert code == 0, err
    asked = Session(lite_backend, video, progress=False).ask(QUESTION)
    assert f"mode: {asked.mode}" in out
    result = json.loads((tmp_path / "segment" / "result.json").read_text())
    assert result["mode"] == asked.mode == DEFAULT_MODE and result["answer"] == asked.answer
    assert_same(output_masks(tmp_path / "segment"), asked, eval_masks(tmp_path / "eval", names))
    assert json.loads((tmp_path / "eval" / "report.json").read_text())["mode"] == DEFAULT_MODE


def test_the_commands_agree_on_a_sa2va_checkpoint(qwen25_fixture, dataset, tmp_path, capsys):
    """The same through the commands for a checkpoint loaded as a hub one is (answer forced, mode direct: the
    tiny model's own text would take minutes to generate)."""
    video = dataset / "JPEGImages" / VIDEO
    names = sorted(p.stem for p in video.iterdir())
    model = ["--backend", "sa2va", "--model", qwen25_fixture / "checkpoint", "--device", "cpu", "--sam2-config",
             qwen25_fixture / "sam2_tiny_test.yaml", "--keyframe-strategy", "first", "--answer", "Sure, [SEG].", "--mode", "direct"]
    code, out, err = run_cli(capsys, "segment", video, QUESTION, "--out", tmp_path / "segment", *model)
    assert code == 0 and "mode: direct" in out, err
    code, _, err = run_cli(capsys, "eval", dataset, "--out", tmp_path / "eval", *model)
    assert code == 0, err
    assistant = Assistant.load("sa2va", str(qwen25_fixture / "checkpoint"), "cpu", sam2_config=str(qwen25_fixture / "sam2_tiny_test.yaml"),
                               keyframe_strategy="first", answer="Sure, [SEG].")  # as the commands load it
    asked = assistant.open(video, progress=False).ask(QUESTION, mode="direct")
    assert_same(output_masks(tmp_path / "segment"), asked, eval_masks(tmp_path / "eval", names))


def test_a_mode_the_request_cannot_take_is_refused_before_a_model_loads(dataset, tmp_path, capsys):
    video = dataset / "JPEGImages" / VIDEO
    code, _, err = run_cli(capsys, "segment", video, QUESTION, "--out", tmp_path / "a", "--mode", "planner", "--backend", "lite")
    assert code == 2 and "--mode planner needs a planner" in err
    code, _, err = run_cli(capsys, "segment", video, "--box", "1,1,20,20", "--out", tmp_path / "b", "--mode", "planner",
                           "--planner", "http://127.0.0.1:9/v1", "--planner-model", "m", "--backend", "lite")
    assert code == 2 and "the planner grounds words only" in err
    code, _, err = run_cli(capsys, "eval", dataset, "--out", tmp_path / "c", "--mode", "direct", "--planner", "http://127.0.0.1:9/v1",
                           "--planner-model", "m", "--backend", "lite")
    assert code == 2 and "does not ask the planner" in err
    assert not any((tmp_path / name).exists() for name in "abc")
