"""Each benchmark reader on a tiny copy of its layout; `rvos eval` runs on each of them."""

import json

import numpy as np
import pytest
from PIL import Image

from agent.errors import UserError
from agent.evaluation.datasets import read_dataset
from agent.evaluation.metrics import region_similarity
from agent.evaluation.runner import EvalJob, run_evaluation
from agent.writers.palette import read_palette_png, save_palette_png
from agent.masks import encode_rle

H, W, N = 12, 16, 4


def labels(t):
    """Object 1 moves right, object 2 sits still; object 2 is absent on the last frame."""
    out = np.zeros((H, W), np.uint8)
    out[2:6, t : t + 4] = 1
    if t < N - 1:
        out[7:11, 10:14] = 2
    return out


def write_frames(folder, names=None):
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"{t:05d}" for t in range(N)]
    for t, name in enumerate(names):
        Image.fromarray((labels(t) * 100).astype(np.uint8)).convert("RGB").save(folder / f"{name}.jpg")
    return names


def write_palette(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(N):
        save_palette_png(folder / f"{t:05d}.png", labels(t))


def meta(expressions, names):
    return {"videos": {"vid": {"expressions": expressions, "frames": names}}}


def rle_track(object_id):
    return [encode_rle(labels(t) == object_id) if (labels(t) == object_id).any() else None for t in range(N)]


def make_youtube(root):
    names = write_frames(root / "valid" / "JPEGImages" / "vid")
    write_palette(root / "valid" / "Annotations" / "vid")
    (root / "meta_expressions" / "valid").mkdir(parents=True)
    exps = {"0": {"exp": "the moving square", "obj_id": "1"}, "1": {"exp": "the still square", "obj_id": "2"}}
    (root / "meta_expressions" / "valid" / "meta_expressions.json").write_text(json.dumps(meta(exps, names)))


def make_davis(root):
    write_frames(root / "DAVIS" / "JPEGImages" / "480p" / "vid")
    write_frames(root / "DAVIS" / "JPEGImages" / "480p" / "other")
    write_palette(root / "DAVIS" / "Annotations" / "480p" / "vid")
    (root / "DAVIS" / "ImageSets" / "2017").mkdir(parents=True)
    (root / "DAVIS" / "ImageSets" / "2017" / "val.txt").write_text("vid\n")
    (root / "davis_text_annotations").mkdir()
    (root / "davis_text_annotations" / "Davis17_annot1.txt").write_text('vid 1 "the moving square"\nvid 2 "the still square"\nother 1 "not in val"\n')
    (root / "davis_text_annotations" / "Davis17_annot2.txt").write_text('vid 1 "a square going right"\n')


def make_mevis(root):
    names = write_frames(root / "valid_u" / "JPEGImages" / "vid")
    exps = {"0": {"exp": "both squares", "obj_id": [1, 2], "anno_id": [10, 11]}, "1": {"exp": "the still one", "obj_id": [2], "anno_id": [11]}}
    (root / "valid_u" / "meta_expressions.json").write_text(json.dumps(meta(exps, names)))
    (root / "valid_u" / "mask_dict.json").write_text(json.dumps({"10": rle_track(1), "11": rle_track(2)}))


def make_mevis_v2(root):
    """MeViS v2: the same layout, `meta_expressions_v2.json`, and an expression that refers to nothing."""
    make_mevis(root)
    meta_v1 = json.loads((root / "valid_u" / "meta_expressions.json").read_text())
    meta_v1["videos"]["vid"]["expressions"]["2"] = {"exp": "the purple triangle", "obj_id": [], "anno_id": []}
    (root / "valid_u" / "meta_expressions.json").unlink()
    (root / "valid_u" / "meta_expressions_v2.json").write_text(json.dumps(meta_v1))


def make_revos(root):
    names = write_frames(root / "JPEGImages" / "vid")
    exps = {"0": {"exp": "the moving square", "obj_id": [1], "anno_id": [10], "type_id": 0},
            "1": {"exp": "what would be left if the moving one went away", "obj_id": [2], "anno_id": [11], "type_id": 1}}
    (root / "meta_expressions_valid_.json").write_text(json.dumps(meta(exps, names)))
    (root / "mask_dict.json").write_text(json.dumps({"10": rle_track(1), "11": rle_track(2)}))
    foreground = [encode_rle(labels(t) > 0) for t in range(N)]
    (root / "mask_dict_foreground.json").write_text(json.dumps({"vid": {"masks_rle": foreground}}))


def make_long_rvos(root):
    names = write_frames(root / "valid" / "JPEGImages" / "vid")
    for obj in (1, 2):
        folder = root / "valid" / "Annotations" / "vid" / str(obj)
        folder.mkdir(parents=True)
        for t in range(N):
            if (labels(t) == obj).any():  # frames without the object have no file
                Image.fromarray(((labels(t) == obj) * 255).astype(np.uint8)).save(folder / f"{t:05d}.png")
    exps = {"0": {"exp": "the moving square", "obj_id": 1, "type": "dynamic"}, "1": {"exp": "the still square", "obj_id": 2, "type": "static"}}
    (root / "valid" / "meta_expressions.json").write_text(json.dumps(meta(exps, names)))


def make_generic(root):
    names = write_frames(root / "JPEGImages" / "vid")
    write_palette(root / "Annotations" / "vid")
    exps = {"0": {"exp": "the moving square", "obj_id": "1"}, "1": {"exp": "the still square", "obj_id": "2"}}
    (root / "meta_expressions.json").write_text(json.dumps(meta(exps, names)))


# name → (writer, expected texts, expected ground-truth object ids per expression, categories)
LAYOUTS = {
    "ref-youtube-vos": (make_youtube, ["the moving square", "the still square"], [[1], [2]], [None, None]),
    "ref-davis17": (make_davis, ["the moving square", "the still square", "a square going right"], [[1], [2], [1]], [None] * 3),
    "mevis": (make_mevis, ["both squares", "the still one"], [[1, 2], [2]], [None, None]),
    "mevis-v2": (make_mevis_v2, ["both squares", "the still one", "the purple triangle"], [[1, 2], [2], []], [None] * 3),
    "revos": (make_revos, ["the moving square", "what would be left if the moving one went away"], [[1], [2]], ["referring", "reasoning"]),
    "long-rvos": (make_long_rvos, ["the moving square", "the still square"], [[1], [2]], ["dynamic", "static"]),
    "generic": (make_generic, ["the moving square", "the still square"], [[1], [2]], [None, None]),
}


def build(tmp_path, name):
    root = tmp_path / name
    LAYOUTS[name][0](root)
    return root


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_reader_on_its_layout(tmp_path, name):
    _, texts, ids, categories = LAYOUTS[name]
    dataset = read_dataset(build(tmp_path, name), name)
    assert [e.text for e in dataset.expressions] == texts
    assert [e.category for e in dataset.expressions] == categories
    assert dataset.videos() == ["vid"]
    for expression, objects in zip(dataset.expressions, ids):
        assert len(expression.frame_names) == N and all(p.is_file() for p in expression.frame_paths())
        for t in range(N):
            want = np.isin(labels(t), objects)
            got = expression.gt(t)
            if got is None:  # an unannotated frame: only where the object is absent
                assert expression.missing_gt_is_empty and not want.any()
            else:
                assert np.array_equal(got, want)
    if name == "revos":
        assert np.array_equal(dataset.expressions[0].foreground(0), labels(0) > 0)
    assert [e.has_target for e in dataset.expressions] == ([True, True, False] if name == "mevis-v2" else [None] * len(texts))


@pytest.fixture(scope="module")
def fixture_backend(qwen25_fixture):
    from agent.backends.sa2va.spec import load_sa2va

    return load_sa2va(str(qwen25_fixture / "checkpoint"), "cpu", sam2_config=qwen25_fixture / "sam2_tiny_test.yaml", answer="Sure, [SEG].")


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_eval_on_each_layout(tmp_path, name, fixture_backend):
    root = build(tmp_path, name)
    out = tmp_path / "eval"
    job = EvalJob(str(root), name, None, "sa2va", str(out), mode="direct")
    report = run_evaluation(job, progress=False, backend=fixture_backend)
    dataset = read_dataset(root, name)
    assert report["expressions_done"] == report["expressions_total"] == len(dataset.expressions)
    assert report["failures"] == {}
    for expression in dataset.expressions:
        folder = out / "predictions" / "vid" / expression.exp_id
        assert sorted(p.stem for p in folder.iterdir()) == expression.frame_names
        # the recorded J is the J of the written prediction against the ground truth
        js = []
        for t, frame in enumerate(expression.frame_names):
            pred = read_palette_png(folder / f"{frame}.png") > 0
            gt = expression.gt(t)
            js.append(region_similarity(pred, np.zeros_like(pred) if gt is None else gt))
        assert report["expressions"][expression.key]["J"] == pytest.approx(np.mean(js))
    if name == "revos":
        assert set(report["by_category"]) == {"referring", "reasoning"} and "R" in report["overall"]
    if name == "mevis-v2":  # N-acc and T-acc from the written predictions
        empty = {e.key: all(read_palette_png(p).max() == 0 for p in (out / "predictions" / "vid" / e.exp_id).iterdir())
                 for e in dataset.expressions}
        assert report["overall"]["N_acc"] == float(np.mean([empty[e.key] for e in dataset.expressions if not e.has_target]))
        assert report["overall"]["T_acc"] == float(np.mean([not empty[e.key] for e in dataset.expressions if e.has_target]))
        assert report["overall"]["no_target_expressions"] == 1
    else:
        assert "N_acc" not in report["overall"]
    import zipfile

    names = zipfile.ZipFile(out / "submission.zip").namelist()
    prefix = "Annotations/" if name == "ref-youtube-vos" else ""
    assert f"{prefix}vid/{dataset.expressions[0].exp_id}/00000.png" in names
    assert (out / "plots" / "jf_per_video.png").is_file() and (out / "plots" / "j_over_time.png").is_file()


def test_target_accuracy_counts_empty_answers():
    from agent.evaluation.report import target_accuracy

    records = [{"has_target": False, "answered_empty": True}, {"has_target": False, "answered_empty": False},
               {"has_target": True, "answered_empty": False}, {"has_target": True, "answered_empty": False},
               {"has_target": True, "answered_empty": True}, {"answered_empty": True}]
    assert target_accuracy(records) == {"N_acc": 0.5, "no_target_expressions": 2, "T_acc": 2 / 3}
    assert target_accuracy([{"answered_empty": True}]) == {}


@pytest.mark.parametrize("video, exp_id, frame, bad", [
    ("../../escaped", "0", "00000", "video id '../../escaped'"),
    ("/tmp/escaped", "0", "00000", "video id '/tmp/escaped'"),
    ("vid", "../../../escaped", "00000", "expression id of video 'vid' '../../../escaped'"),
    ("vid", "0", "../../../../escaped", "frame name of video 'vid' '../../../../escaped'"),
    ("vid", "a\\..\\..", "00000", "expression id of video 'vid' 'a\\\\..\\\\..'"),
])
def test_ids_that_leave_the_output_folder_are_refused(tmp_path, video, exp_id, frame, bad):
    """A crafted generic-layout meta: `rvos eval` refuses it before loading a model or writing anything."""
    root = tmp_path / "data" / "crafted"
    names = write_frames(root / "JPEGImages" / "vid")
    frames = [frame] + names[1:]
    (root / "meta_expressions.json").write_text(json.dumps(
        {"videos": {video: {"expressions": {exp_id: {"exp": "the moving square", "obj_id": "1"}}, "frames": frames}}}))
    out = tmp_path / "runs" / "eval"
    job = EvalJob(str(root), "generic", None, "no-such-backend", str(out))
    with pytest.raises(UserError, match="not a plain name") as refused:
        run_evaluation(job, progress=False)
    assert bad in str(refused.value) and "\n" not in str(refused.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # nothing written, not even --out


def test_video_ids_with_folders_stay_inside(tmp_path):
    """ReVOS names its videos by source (`UVO/all/<id>`): such ids are read as they are."""
    root = tmp_path / "nested"
    names = write_frames(root / "JPEGImages" / "UVO" / "all" / "vid")
    exps = {"0": {"exp": "the moving square", "obj_id": "1"}}
    (root / "meta_expressions.json").write_text(json.dumps({"videos": {"UVO/all/vid": {"expressions": exps, "frames": names}}}))
    dataset = read_dataset(root)
    assert dataset.videos() == ["UVO/all/vid"] and all(p.is_file() for p in dataset.expressions[0].frame_paths())
