"""`make demo` on a fresh clone: the sample clip made from scikit-image's coffee photograph, and the lite
backend finding the cup its instruction names on every frame."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from agent.errors import UserError
from agent.video import sample

# The cup with its handle (not the saucer or the spoon) in the photograph's pixels, measured once by eye
# on a 20-pixel grid drawn over skimage/data/coffee.png.
CUP_IN_PHOTO = (172, 17, 409, 306)
# Measured on this clip (2-core Intel AMX): of the mask, 0.989 or more lies in the cup's box on every frame; it
# fills 0.53–0.73 of that box (0.65 on average; the cup's own outline fills about 0.70 of it).
MIN_ON_CUP = 0.95
MIN_FILL, MIN_MEAN_FILL = 0.45, 0.55


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder, instruction = sample.make_sample_clip(tmp_path_factory.mktemp("demo") / "clip")
    return folder, instruction


def cup_box_in_frame(window) -> np.ndarray:
    """The cup's box as a mask on the frame whose camera window (in the photograph) is `window`."""
    x0, y0, x1, y1 = window
    width, height = sample.FRAME_SIZE
    sx, sy = width / (x1 - x0), height / (y1 - y0)
    left, top = round((CUP_IN_PHOTO[0] - x0) * sx), round((CUP_IN_PHOTO[1] - y0) * sy)
    right, bottom = round((CUP_IN_PHOTO[2] - x0) * sx), round((CUP_IN_PHOTO[3] - y0) * sy)
    box = np.zeros((height, width), bool)
    box[top:bottom, left:right] = True
    return box


def test_the_sample_clip_is_the_photograph_seen_by_a_slowly_moving_camera(clip, tmp_path):
    folder, instruction = clip
    frames = sorted(folder.iterdir())
    assert [f.name for f in frames] == [f"{i:05d}.jpg" for i in range(sample.NUM_FRAMES)]
    again, _ = sample.make_sample_clip(tmp_path / "again")
    assert all((again / f.name).read_bytes() == f.read_bytes() for f in frames)  # deterministic

    from skimage import data  # the photograph as scikit-image itself loads it

    photo = Image.fromarray(data.coffee())
    pixels = [np.asarray(Image.open(f), dtype=np.float32) for f in frames]
    assert all(p.shape == (sample.FRAME_SIZE[1], sample.FRAME_SIZE[0], 3) for p in pixels)
    for index in (0, len(frames) - 1):
        x0, y0, x1, y1 = (round(v) for v in sample.camera_windows()[index])
        seen = np.asarray(photo.crop((x0, y0, x1, y1)).resize(sample.FRAME_SIZE), dtype=np.float32)
        assert np.abs(pixels[index] - seen).mean() < 6  # that part of the photograph (JPEG and rounding aside)
    # It moves, and slowly: on 24×16 thumbnails (the wood's grain averaged out) each frame is close to the one
    # before (measured: at most 5.6 grey levels) and the last far from the first (41).
    thumbs = [np.asarray(Image.open(f).resize((24, 16), Image.Resampling.BOX), dtype=np.float32) for f in frames]
    steps = [np.abs(b - a).mean() for a, b in zip(thumbs, thumbs[1:])]
    assert np.abs(thumbs[-1] - thumbs[0]).mean() > 5 * max(steps)
    assert instruction == "the coffee cup"


def test_the_sample_entry_point_prints_the_instruction_and_reuses_the_clip(clip, tmp_path):
    folder, instruction = clip
    before = {f.name: f.stat().st_mtime_ns for f in folder.iterdir()}
    run = subprocess.run([sys.executable, "-m", "agent.video.sample", str(folder)], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout == instruction + "\n"
    assert {f.name: f.stat().st_mtime_ns for f in folder.iterdir()} == before  # made once, not again

    (tmp_path / "holiday.jpg").write_bytes(b"someone's photo")
    with pytest.raises(UserError, match="holds other files"):
        sample.make_sample_clip(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["holiday.jpg"]


def test_lite_segments_the_cup_the_instruction_names_on_every_frame(clip, lite_assistant):
    folder, instruction = clip
    reply = lite_assistant.open(folder, progress=False).ask(instruction, mode="direct")
    assert list(reply.objects) == [1] and reply.answer.startswith("I found the") and "cup" in reply.answer
    fills = []
    for index, window in enumerate(sample.camera_windows()):
        mask, cup = reply.masks(index)[1], cup_box_in_frame(window)
        on_cup = np.count_nonzero(mask & cup)
        assert on_cup / max(np.count_nonzero(mask), 1) >= MIN_ON_CUP, index  # not the saucer, table or spoon
        fills.append(on_cup / np.count_nonzero(cup))
    assert min(fills) >= MIN_FILL and np.mean(fills) >= MIN_MEAN_FILL, fills
