"""Semi-supervised mode: `rvos segment VIDEO --mask/--box/--point`, `rvos eval --protocol semi`, and the
command-line prompts' checks (one clear line, exit 2, nothing written)."""

import json

import numpy as np
import pytest

from conftest import run_cli
from agent.evaluation.metrics import region_similarity
from agent.grounder.visual import command_line_prompts, parse_point
from agent.writers import read_palette_png, save_palette_png


def test_command_line_prompts_parse_into_objects(tmp_path):
    labels = np.zeros((12, 16), np.uint8)
    labels[2:5, 2:5], labels[6:9, 8:12] = 1, 2
    save_palette_png(tmp_path / "first.png", labels)
    prompts = command_line_prompts(3, (16, 12), points=["3,4", "10,8,-", "5,5@2"], boxes=["1,1,9,9@2"], masks=[f"{tmp_path / 'first.png'}"])
    by_object = {}
    for p in prompts:
        by_object.setdefault(p.object_id, []).append(p)
    assert sorted(by_object) == [1, 2, 3]  # two mask ids, then the box with the clicks (one box: one object)
    assert [p.frame_index for p in by_object[1]] == [0] and by_object[1][0].mask.sum() == 9
    clicked = {p.frame_index: p for p in by_object[3]}
    assert clicked[0].points == [(3.0, 4.0), (10.0, 8.0)] and clicked[0].point_labels == [1, 0]
    assert clicked[2].box == (1.0, 1.0, 9.0, 9.0) and clicked[2].points == [(5.0, 5.0)]
    assert parse_point("12.5, 7 ,-@4") == (4, (12.5, 7.0), 0)


@pytest.mark.parametrize("options,message", [
    (["--point", "16,3"], "outside the 16x12 frame"),
    (["--point", "3,3@3"], "frame 3 is outside the video"),
    (["--point", "3,x"], "--point '3,x': write X,Y"),
    (["--point", "3,3,-"], "only negative clicks"),
    (["--box", "4,4,4,9"], "has no area"),
    (["--box", "0,0,20,9"], "leaves the 16x12 frame"),
    (["--mask", "MISSING"], "not found"),
    (["--mask", "WRONGSIZE"], "the video is 16x12"),
    (["--mask", "EMPTY"], "empty"),
    ([], "an instruction (\"the dog on the left\") or a visual prompt"),
])
def test_bad_visual_prompts_exit_2_with_one_line_and_write_nothing(capsys, tmp_path, frames_dir, options, message):
    save_palette_png(tmp_path / "wrong.png", np.ones((10, 10), np.uint8))
    save_palette_png(tmp_path / "empty.png", np.zeros((12, 16), np.uint8))
    names = {"MISSING": tmp_path / "nope.png", "WRONGSIZE": tmp_path / "wrong.png", "EMPTY": tmp_path / "empty.png"}
    options = [str(names.get(o, o)) for o in options]
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(capsys, "segment", frames_dir, *options, "--out", out, "--backend", "lite")
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert not out.exists()


def test_segment_from_the_first_frames_annotation_tracks_the_object(capsys, tmp_path, refdavis):
    """The DAVIS semi-supervised protocol from the command line, on a real video, and a box mid-video."""
    video = refdavis / "JPEGImages" / "car-shadow"
    annotation = refdavis / "Annotations" / "car-shadow" / "00000.png"
    code, stdout, _ = run_cli(capsys, "segment", video, "--mask", annotation, "--out", tmp_path / "out", "--no-overlay")
    assert code == 0, stdout
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["objects"] == [{"id": 1, "produced_by": "mask prompt"}] and result["instruction"] is None
    truth = [read_palette_png(p) == 1 for p in sorted((refdavis / "Annotations" / "car-shadow").glob("*.png"))]
    predicted = [read_palette_png(p) == 1 for p in sorted((tmp_path / "out" / "masks").glob("*.png"))]
    assert len(predicted) == len(truth)
    assert np.mean([region_similarity(p, t) for p, t in zip(predicted, truth)]) > 0.6


def test_eval_semi_protocol_scores_like_the_davis_toolkit(capsys, tmp_path, refdavis):
    """`--protocol semi` on a copy of one shared video: the first annotation in, palette predictions out,
    scored without the first and last frame; the report matches `rvos score` on those predictions."""
    root = tmp_path / "data"
    for kind in ("JPEGImages", "Annotations"):
        (root / kind / "blackswan").mkdir(parents=True)
        for path in sorted((refdavis / kind / "blackswan").iterdir())[:12]:
            (root / kind / "blackswan" / path.name).write_bytes(path.read_bytes())
    code, stdout, _ = run_cli(capsys, "eval", root, "--protocol", "semi", "--backend", "lite", "--out", tmp_path / "eval")
    assert code == 0 and "DAVIS semi-supervised" in stdout
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["videos"]["blackswan"]["1"]["frames"] == 10  # 12 frames less the first and last
    assert report["overall"]["JF"] > 0.6
    first = read_palette_png(tmp_path / "eval" / "predictions" / "blackswan" / "00000.png")
    assert np.array_equal(first, read_palette_png(root / "Annotations" / "blackswan" / "00000.png"))  # the prompt is kept
    code, _, _ = run_cli(capsys, "score", root, tmp_path / "eval" / "predictions", "--skip-first-last", "--out", tmp_path / "score.json")
    assert json.loads((tmp_path / "score.json").read_text())["overall"] == report["overall"]
