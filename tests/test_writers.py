import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from agent.errors import UserError
from agent.tracker.protocol import FrameMasks
from agent.video import VideoSource
from agent.writers import SegmentationWriter, davis_palette, masks_from_labels, read_palette_png
from conftest import VIDEOS, count_video_frames


def write_ground_truth(refdavis, video, out, overlay=True):
    source = VideoSource.open(refdavis / "JPEGImages" / video)
    gt = {}
    with SegmentationWriter(out, source, "ground truth", overlay=overlay) as writer:
        for index, image in source.frames():
            labels = read_palette_png(refdavis / "Annotations" / video / f"{source.frame_names[index]}.png")
            gt[source.frame_names[index]] = labels
            writer.write(FrameMasks(index, masks_from_labels(labels), image=image))
        writer.finish({"instruction": "ground truth", "objects": [{"id": 1, "produced_by": "DAVIS"}]})
    return source, gt


@pytest.mark.parametrize("video", VIDEOS)
def test_real_masks_round_trip(refdavis, tmp_path, video):
    out = tmp_path / "out"
    source, gt = write_ground_truth(refdavis, video, out)
    assert sorted(p.stem for p in (out / "masks").iterdir()) == source.frame_names
    for name, labels in gt.items():
        path = out / "masks" / f"{name}.png"
        assert np.array_equal(read_palette_png(path), labels)
        with Image.open(path) as written:
            assert written.mode == "P" and written.size == (854, 480)
    result = json.loads((out / "result.json").read_text())
    assert result["instruction"] == "ground truth" and len(result["frames"]) == len(source)
    for record in result["frames"]:
        labels = gt[record["name"]]
        rle = record["objects"]["1"]["rle"]
        assert rle["size"] == [480, 854]
        decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        assert np.array_equal(decoded.astype(bool), labels == 1)
        x, y, w, h = record["objects"]["1"]["bbox"]
        ys, xs = np.nonzero(labels == 1)
        assert (x, y, x + w - 1, y + h - 1) == (xs.min(), ys.min(), xs.max(), ys.max())
    assert count_video_frames(out / "overlay.mp4") == len(source)
    assert not list(tmp_path.glob(".out.*"))  # no temporary folder left


def test_palette_is_the_davis_palette(refdavis):
    with Image.open(refdavis / "Annotations" / "blackswan" / "00000.png") as gt:
        theirs = np.array(gt.getpalette()[: 3 * 8]).reshape(-1, 3)
    assert np.array_equal(davis_palette()[:8], theirs)


def small_source(n=3):
    return VideoSource.open([Image.new("RGB", (9, 7), (i * 40, 0, 0)) for i in range(n)])


def write_small(out, **kwargs):
    source = small_source()
    with SegmentationWriter(out, source, "x", **kwargs) as writer:
        for index, image in source.frames():
            writer.write_empty(index, image)
        return writer.finish({"instruction": "x", "objects": []})


def test_existing_folder_refused_unless_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(UserError, match="not empty"):
        write_small(out)
    assert (out / "keep.txt").exists()
    with pytest.raises(UserError, match=r"not an earlier rvos output \(e.g. keep.txt\)"):
        write_small(out, overwrite=True)  # a person's file: never replaced
    assert (out / "keep.txt").read_text() == "old"
    (out / "keep.txt").unlink()
    write_small(out)
    first = (out / "result.json").stat().st_ino
    write_small(out, overwrite=True)  # an earlier output of ours is replaced
    assert (out / "result.json").stat().st_ino != first and sorted(p.name for p in (out / "masks").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failure_leaves_nothing_behind(tmp_path):
    out = tmp_path / "deep" / "er" / "out"
    source = small_source()
    with pytest.raises(RuntimeError, match="boom"):
        with SegmentationWriter(out, source, "x") as writer:
            writer.write_empty(0, source.frame(0))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_odd_sized_overlay_and_no_overlay(tmp_path):
    write_small(tmp_path / "a")
    assert count_video_frames(tmp_path / "a" / "overlay.mp4") == 3
    write_small(tmp_path / "b", overlay=False)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["masks", "result.json"]
