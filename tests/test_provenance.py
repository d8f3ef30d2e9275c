"""result.json and report.json record what shaped a result: the package version, the backend, its model and
device, the keyframe choice, the options given and every setting the backend ran with (defaults resolved)."""

import json

import numpy as np
from PIL import Image

from agent import __version__
from agent.assistant import Assistant
from agent.backends.base import Backend
from agent.evaluation.runner import EvalJob
from agent.evaluation.semi import run_semi_supervised
from agent.grounder.protocol import Grounding, ObjectPrompt
from agent.planner import PlannerConfig
from agent.tracker.protocol import FrameMasks
from agent.writers.palette import save_palette_png
from conftest import run_cli


def test_segment_result_records_the_version_backend_and_every_setting_used(qwen25_fixture, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, stderr = run_cli(capsys, "segment", qwen25_fixture / "inputs", "the red square", "--out", out, "--backend", "sa2va",
                              "--model", qwen25_fixture / "checkpoint", "--sam2-config", qwen25_fixture / "sam2_tiny_test.yaml",
                              "--answer", "Sure, [SEG].", "--mode", "direct", "--keyframes", "3", "--keyframe-strategy", "first", "--no-overlay")
    assert code == 0, stderr
    result = json.loads((out / "result.json").read_text())
    assert result["rvos_agent"] == __version__ and result["backend"] == "sa2va" and result["device"] == "cpu"
    assert result["model"] == str(qwen25_fixture / "checkpoint")
    assert result["keyframe_count"] == 3 and result["keyframe_strategy"] == "first" and result["keyframes"] == [0, 1, 2]
    assert result["options"] == {"keyframes": 3, "keyframe_strategy": "first", "answer": "Sure, [SEG].",
                                 "sam2_config": str(qwen25_fixture / "sam2_tiny_test.yaml")}
    settings = result["settings"]  # the values resolved from defaults too: CPU → float32, the checkpoint's own inference
    assert settings["dtype"] == "float32" and settings["inference"] == "sa2va" and settings["sam2_normalisation"] == "bfloat16"
    assert settings["sam2_config"] == str(qwen25_fixture / "sam2_tiny_test.yaml") and settings["family"] == "qwen2_5_vl"


# --- control flow of Reply.save and the evaluation report, with a scripted backend ---------------------------------------
class OneSquare:
    def ground(self, keyframes, instruction, history=()):
        return Grounding("there", [ObjectPrompt(1, 0, box=(2, 2, 6, 6))], {1: instruction})


class GivenMasks:
    """Each prompt's mask (or a fixed square) on every frame."""

    def track(self, video, prompts, keyframes, **_):
        w, h = video.size
        square = np.zeros((h, w), bool)
        square[2:6, 2:6] = True
        for t in range(len(video)):
            yield FrameMasks(t, {p.object_id: square if p.mask is None else p.mask for p in prompts})


def scripted_backend(**settings) -> Backend:
    return Backend("scripted", "scripted-model", "cpu", OneSquare(), GivenMasks(), 2, "first", settings=settings)


def test_a_saved_reply_records_the_backend_its_settings_and_the_planner(tmp_path):
    frames = [np.zeros((12, 16, 3), np.uint8) for _ in range(4)]
    planner = PlannerConfig("http://127.0.0.1:9/v1", "some-model", max_calls=3)
    session = Assistant(scripted_backend(threshold=0.3), planner=planner).open(frames)
    reply = session.ask("the square", mode="direct")
    result = json.loads((reply.save(tmp_path / "reply", overlay=False) / "result.json").read_text())
    assert result["rvos_agent"] == __version__ and result["backend"] == "scripted" and result["model"] == "scripted-model"
    assert result["keyframe_count"] == 2 and result["keyframe_strategy"] == "first" and result["keyframes"] == [0, 1]
    assert result["settings"] == {"threshold": 0.3}
    assert result["planner"]["model"] == "some-model" and result["planner"]["max_calls"] == 3 and "http_client" not in result["planner"]
    state = json.loads((session.state().save(tmp_path / "state", overlay=False) / "result.json").read_text())
    assert state["settings"] == {"threshold": 0.3} and state["backend"] == "scripted"


def tiny_davis(root):
    square = np.zeros((12, 16), np.uint8)
    square[3:8, 4:10] = 1
    for folder in ("JPEGImages/clip", "Annotations/clip"):
        (root / folder).mkdir(parents=True)
    for t in range(4):
        Image.new("RGB", (16, 12), (40 * t, 0, 0)).save(root / "JPEGImages/clip" / f"{t:05d}.jpg")
        save_palette_png(root / "Annotations/clip" / f"{t:05d}.png", square)
    return root


def test_the_semi_supervised_report_records_the_backend_that_made_the_predictions(tmp_path):
    root, out = tiny_davis(tmp_path / "davis"), tmp_path / "eval"
    job = EvalJob(str(root), "generic", None, "scripted", str(out), "scripted-model", "cpu")
    report = run_semi_supervised(job, progress=False, backend=scripted_backend(rule=7))
    assert report["overall"]["J"] == 1.0  # the mask given is the mask kept
    assert report["rvos_agent"] == __version__ and report["backend"] == "scripted" and report["model"] == "scripted-model"
    assert report["settings"] == {"rule": 7} and report["keyframe_count"] == 2
    resumed = run_semi_supervised(job, progress=False)  # nothing left to run: no backend loads, what made them is kept
    assert all(resumed[key] == report[key] for key in ("rvos_agent", "backend", "model", "device", "keyframe_count", "options", "settings"))
    assert json.loads((out / "report.json").read_text())["settings"] == {"rule": 7}


def test_lite_records_each_rule_value_and_nothing_that_is_not_a_rule():
    from types import SimpleNamespace

    from agent.backends.lite.spec import rule_settings
    from agent.backends.lite.tracker import LiteTracker

    settings = rule_settings(SimpleNamespace(min_score=0.25, detector=object()), LiteTracker(None, max_growth=1.7))
    assert settings["tracker"]["max_growth"] == 1.7 and settings["tracker"]["SEARCH_SCORE"] == 0.05
    assert settings["grounder"]["min_score"] == 0.25 and "detector" not in settings["grounder"]  # a model, not a value
    assert settings["answers"]["LOOK_ALIKE"] == 0.95 and "TYPE_CHECKING" not in settings["answers"]  # typing's flag
    assert len(settings["vocabulary"]["sha256"]) == 64
