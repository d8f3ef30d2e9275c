"""`rvos batch`: many videos through `rvos segment`'s one path — a manifest with a corrupt video, resuming, bad
input refused before a model loads, safe folder names, and the same masks on a local Ray cluster."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import encode_video, run_cli

FRAMES, SIZE = 3, (428, 240)  # short, half-size copies of the shared videos keep each item to seconds on lite
GOOD = {"blackswan": "the black swan", "car-shadow": "the car"}
BACKEND = ("--backend", "lite", "--keyframes", "1", "--no-overlay")
# manifest line → output folder: line 2 is a corrupt video
FOLDERS = {1: "0001-blackswan", 2: "0002-broken", 3: "0003-car-shadow"}


@pytest.fixture(scope="module")
def clips(refdavis, tmp_path_factory):
    """Two short frame folders of shared videos (half size), garbage bytes named broken.mp4, and clips.jsonl listing the three
    by paths relative to it."""
    root = tmp_path_factory.mktemp("clips")
    for video in GOOD:
        (root / video).mkdir()
        for frame in sorted((refdavis / "JPEGImages" / video).glob("*.jpg"))[:FRAMES]:
            Image.open(frame).resize(SIZE).save(root / video / frame.name)
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    lines = [{"video": "blackswan", "instruction": GOOD["blackswan"]}, {"video": "broken.mp4", "instruction": "the dog"},
             {"video": "car-shadow", "instruction": GOOD["car-shadow"]}]
    (root / "clips.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root


@pytest.fixture(scope="module")
def segmented(clips, tmp_path_factory):
    """`rvos segment` of each good item, one by one: what the batch must reproduce."""
    from agent.cli import main

    out = tmp_path_factory.mktemp("segment")
    for video, instruction in GOOD.items():
        assert main(["segment", str(clips / video), instruction, "--out", str(out / video), *BACKEND]) == 0
    return out


def masks(folder):
    return {p.name: np.asarray(Image.open(p)) for p in sorted((folder / "masks").glob("*.png"))}


def assert_same_masks(folder, reference):
    got, expected = masks(folder), masks(reference)
    assert list(got) == list(expected) and len(got) == FRAMES
    assert any(m.any() for m in expected.values()), "the reference found nothing: the comparison would prove little"
    for name in expected:
        assert np.array_equal(got[name], expected[name]), f"{folder.name}/{name} differs from rvos segment's"
    assert json.loads((folder / "result.json").read_text())["answer"] == json.loads((reference / "result.json").read_text())["answer"]


def summary(out):
    return json.loads((out / "batch.json").read_text())


def assert_broken_failed(report, err_line):
    failed = [r for r in report["results"] if r["status"] == "failed"]
    assert [r["line"] for r in failed] == [2]
    assert "broken.mp4" in failed[0]["error"] and "cannot read video" in failed[0]["error"]
    assert f"failed: {FOLDERS[2]}: " in err_line


def test_batch_manifest_with_a_corrupt_video_resumes_and_retries(clips, segmented, tmp_path, capsys):
    data = tmp_path / "clips"  # a copy: the broken video gets mended below
    shutil.copytree(clips, data)
    out = tmp_path / "batch"
    code, stdout, _ = run_cli(capsys, "batch", data / "clips.jsonl", "--out", out, *BACKEND)
    assert code == 1
    report = summary(out)
    assert (report["items"], report["done"], report["skipped"], report["failed"]) == (3, 2, 0, 1)
    assert_broken_failed(report, stdout)
    assert "3 videos: 2 done, 0 skipped (already finished), 1 failed" in stdout
    # one folder per finished item, nothing half-written for the failed one
    assert sorted(p.name for p in out.iterdir()) == [FOLDERS[1], FOLDERS[3], "batch.json"]
    for line, video in ((1, "blackswan"), (3, "car-shadow")):
        assert_same_masks(out / FOLDERS[line], segmented / video)

    written = {p: p.stat().st_mtime_ns for p in out.glob("*/result.json")}
    code, stdout, _ = run_cli(capsys, "batch", data / "clips.jsonl", "--out", out, *BACKEND)
    assert code == 1
    report = summary(out)
    assert (report["done"], report["skipped"], report["failed"]) == (0, 2, 1)  # finished items skipped, the failure retried
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/result.json")} == written

    encode_video(data / "blackswan", data / "broken.mp4", "libx264")  # mended: the next run finishes it
    code, stdout, _ = run_cli(capsys, "batch", data / "clips.jsonl", "--out", out, *BACKEND)
    assert code == 0, stdout
    report = summary(out)
    assert (report["done"], report["skipped"], report["failed"]) == (1, 2, 0)
    assert len(masks(out / FOLDERS[2])) == FRAMES


def test_batch_on_a_local_ray_cluster_gives_the_same_masks(clips, segmented, tmp_path, capsys):
    import ray

    # a cluster of this test's own (never one another program started), which the command then joins
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        out = tmp_path / "batch"
        code, stdout, _ = run_cli(capsys, "batch", clips / "clips.jsonl", "--out", out, *BACKEND, "--ray", "auto", "--workers", "2")
    finally:
        ray.shutdown()
    assert code == 1
    report = summary(out)
    assert (report["done"], report["skipped"], report["failed"]) == (2, 0, 1)
    assert_broken_failed(report, stdout)
    for line, video in ((1, "blackswan"), (3, "car-shadow")):
        assert_same_masks(out / FOLDERS[line], segmented / video)


BAD_MANIFESTS = {
    "box": ('{"video": "a.mp4", "instruction": "the dog"}\n{"video": "b.mp4", "box": "10,20,30"}\n', "clips.jsonl line 2: --box '10,20,30'"),
    "point": ('{"video": "a.mp4", "point": ["1,2", "3,4,*"]}\n', "clips.jsonl line 1: --point '3,4,*'"),
    "no video": ('\n{"instruction": "the dog"}\n', "clips.jsonl line 2: no video"),
    "nothing asked": ('{"video": "a.mp4", "instruction": " "}\n', "clips.jsonl line 1: say what to segment"),
    "unknown field": ('{"video": "a.mp4", "instrution": "the dog"}\n', "clips.jsonl line 1: unknown field 'instrution'"),
    "not json": ('{"video": "a.mp4", "instruction": "the dog"}\n{"video": "b.mp4",\n', "clips.jsonl line 2: not JSON"),
    "csv column": ("video,text\na.mp4,the dog\n", "clips.csv line 1: no 'instruction' column"),
    "csv prompt": ('video,instruction,box\na.mp4,the dog,"1,2,3,4"\nb.mp4,,"1,2,3,4;5,6"\n', "clips.csv line 3: --box '5,6'"),
    "csv cells": ("video,instruction\na.mp4,the dog,1,2,3,4\n", "clips.csv line 2: 6 cells, the header has 2"),
}


@pytest.mark.parametrize("case", BAD_MANIFESTS)
def test_batch_bad_manifest_exits_2_naming_the_line_before_a_model_loads(case, tmp_path, capsys, monkeypatch):
    import agent.backends

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded for a bad manifest")

    monkeypatch.setattr(agent.backends, "load_backend", no_model)
    text, expected = BAD_MANIFESTS[case]
    manifest = tmp_path / ("clips.csv" if case.startswith("csv") else "clips.jsonl")
    manifest.write_text(text)
    code, stdout, err = run_cli(capsys, "batch", manifest, "--out", tmp_path / "out", "--backend", "lite")
    assert code == 2
    assert err.startswith(f"rvos: error: {expected}") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_batch_input_that_is_not_a_batch_exits_2(tmp_path, capsys, frames_dir):
    manifest = tmp_path / "clips.jsonl"
    manifest.write_text('{"video": "a.mp4", "instruction": "the dog"}\n')
    cases = [((manifest, "the cat"), "a manifest gives each video its own instruction"),
             ((frames_dir, "the cat"), "holds frames, not videos"),
             ((tmp_path / "nowhere", "the cat"), "does not exist"),
             ((tmp_path / "empty.jsonl",), "lists no videos")]
    (tmp_path / "empty.jsonl").write_text("\n")
    for args, expected in cases:
        code, _, err = run_cli(capsys, "batch", *args, "--out", tmp_path / "out", "--backend", "lite")
        assert code == 2 and expected in err, err
    code, _, err = run_cli(capsys, "batch", manifest, "--out", tmp_path / "out", "--backend", "lite", "--workers", "2")
    assert code == 2 and "--workers" in err


def test_batch_item_folders_are_safe_unique_and_inside_out(tmp_path):
    from agent.batch import read_items

    out = tmp_path / "out"
    manifest = tmp_path / "lists" / "clips.csv"
    manifest.parent.mkdir()
    manifest.write_text('video,instruction,point,mask\n../../x/clip.mp4,the dog,"1,2;3,4,-@2",\n'
                        "a b?*.mp4,the cat,,m.png@3\n/abs/clip.mp4,the cat,,\n..,the cow,,\n")
    items = read_items(manifest, out)
    assert [i.name for i in items] == ["0002-clip", "0003-a_b", "0004-clip", "0005-video"]
    assert all((out / i.name).resolve().parent == out.resolve() for i in items)
    assert Path(items[0].video).resolve() == (tmp_path.parent / "x" / "clip.mp4").resolve() and items[0].points == ("1,2", "3,4,-@2")
    assert items[1].masks == (f"{manifest.parent / 'm.png'}@3",)  # relative to the manifest, frame kept

    clips = tmp_path / "clips"
    (clips / "a 1").mkdir(parents=True)  # a frame folder
    for name in ("b.mp4", "b.MKV", "batch.json.mp4"):
        (clips / name).write_bytes(b"")  # what they hold is only read when the batch runs
    (clips / "notes.txt").write_text("not a video")
    (clips / "out").mkdir()  # the output folder inside the input is no item
    items = read_items(clips, clips / "out", "the dog")
    assert sorted(i.name for i in items) == ["a_1", "b", "b-2", "batch.json-2"]
    assert {i.instruction for i in items} == {"the dog"} and all(i.line is None for i in items)


def test_batch_reruns_an_item_whose_request_changed_and_keeps_a_foreign_batch_json(clips, tmp_path, capsys):
    data = tmp_path / "clips"
    data.mkdir()
    shutil.copytree(clips / "blackswan", data / "blackswan")
    manifest = data / "one.jsonl"
    manifest.write_text(json.dumps({"video": "blackswan", "instruction": GOOD["blackswan"]}) + "\n")
    out = tmp_path / "batch"
    assert run_cli(capsys, "batch", manifest, "--out", out, *BACKEND)[0] == 0
    assert run_cli(capsys, "batch", manifest, "--out", out, *BACKEND)[0] == 0
    assert summary(out)["skipped"] == 1  # the same request: its whole output is kept
    manifest.write_text(json.dumps({"video": "blackswan", "instruction": GOOD["blackswan"], "box": "100,80,300,200"}) + "\n")
    assert run_cli(capsys, "batch", manifest, "--out", out, *BACKEND)[0] == 0
    report = summary(out)
    assert (report["done"], report["skipped"]) == (1, 0)  # a box added: segmented again, not skipped
    assert report["results"][0]["request"]["boxes"] == ["100,80,300,200"]

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "batch.json").write_text('{"my": "notes"}')
    code, _, err = run_cli(capsys, "batch", manifest, "--out", theirs, *BACKEND)
    assert code == 2 and "not a summary that rvos batch wrote" in err and len(err.strip().splitlines()) == 1
    assert (theirs / "batch.json").read_text() == '{"my": "notes"}' and sorted(p.name for p in theirs.iterdir()) == ["batch.json"]
