"""A live session (`Assistant.open(source)`): frames pushed one by one as a browser's camera would send them, a
question or a click while the stream runs acts from the next frame on, beside what is already tracked.

The frames are blackswan's (shared video); each is pushed once the previous one is handled, so nothing is dropped
and a run is comparable frame for frame with the same causal run over a file (`--live` on a file)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.assistant import Assistant, LiveSession
from agent.backends.lite.tracker import interior_point
from agent.errors import UserError
from agent.live import run_live
from agent.masks import decode_rle, mask_iou
from agent.pipeline import Request
from agent.video.live import LiveSource
from agent.writers import read_palette_png
from test_live import check_output, lines

FRAMES = 12
ASK_AT = 4  # the question comes while the stream is at this frame


def wait_until(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the live run"
        time.sleep(0.01)


def push_all(session: LiveSession, images: list[Image.Image], at: dict[int, callable] | None = None) -> None:
    """Push each frame once the one before is handled; `at[i]()` runs (in this thread) before frame i goes."""
    for i, image in enumerate(images):
        if at and i in at:
            at[i]()
        session.source.push(image)
        wait_until(lambda: session.counts["handled"] == i + 1)


@pytest.fixture(scope="module")
def swan(refdavis) -> tuple[list[Image.Image], list[np.ndarray]]:
    names = sorted((refdavis / "JPEGImages" / "blackswan").glob("*.jpg"))[:FRAMES]
    images = [Image.open(p).convert("RGB") for p in names]
    truth = [np.asarray(Image.open(refdavis / "Annotations" / "blackswan" / f"{p.stem}.png")) > 0 for p in names]
    return images, truth


def masks_by_frame(out: Path) -> dict[int, dict[str, np.ndarray]]:
    return {r["frame"]: {k: decode_rle(o["rle"]) for k, o in r["objects"].items()} for r in lines(out / "frames.jsonl")}


def test_a_question_asked_mid_stream_segments_from_that_frame_on_as_a_run_started_there(lite_backend, swan, refdavis, tmp_path):
    images, truth = swan
    session = Assistant(lite_backend).open(LiveSource.pushed("camera"), out=tmp_path / "live")
    assert isinstance(session, LiveSession)
    replies = []
    push_all(session, images, at={ASK_AT: lambda: replies.append(in_background(session, session.ask, "a black swan"))})
    result = session.stop(timeout=60)
    assert result.handled == FRAMES and result.dropped == 0
    reply = replies[0].result(timeout=60)
    assert reply.objects, reply.answer
    got = masks_by_frame(tmp_path / "live")
    assert all(not m.any() for f in range(ASK_AT) for m in got[f].values())  # nothing asked yet: nothing found
    assert all(got[f]["1"].any() for f in range(ASK_AT, FRAMES))
    # the same causal run over the frames from ASK_AT on, started with the question: the same masks
    reference = LiveSource.pushed("reference", queue_size=FRAMES)  # all queued before the run: none dropped
    for image in images[ASK_AT:]:
        reference.push(image)
    reference.end()
    run_live(reference, lite_backend, Request("a black swan"), tmp_path / "reference")
    expected = masks_by_frame(tmp_path / "reference")
    for f in range(ASK_AT, FRAMES):
        assert np.array_equal(got[f]["1"], expected[f - ASK_AT]["1"]), f
    assert np.mean([mask_iou(got[f]["1"], truth[f]) for f in range(ASK_AT, FRAMES)]) > 0.7
    check_output(tmp_path / "live")


def in_background(session: LiveSession, call, *args):
    """`call(*args, timeout=120)` from another thread (as a page's handler makes it), returning its future once the
    run has the request: the run takes it up on the next frame, which this thread pushes."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1)
    future = pool.submit(call, *args, timeout=120)
    wait_until(lambda: not session.segmentation.runner.added.empty())
    pool.shutdown(wait=False)
    return future


def test_clicks_mid_stream_add_an_object_beside_the_tracked_one_or_re_anchor_it(lite_backend, swan, tmp_path):
    images, truth = swan
    session = Assistant(lite_backend).open(LiveSource.pushed("camera"), out=tmp_path / "live", instruction="a black swan")
    x, y = interior_point(truth[ASK_AT])
    replies = {}
    clicks = {ASK_AT: lambda: replies.setdefault("water", in_background(session, session.click, 40, 40)),
              ASK_AT + 3: lambda: replies.setdefault("swan", in_background(session, session.click, x, y))}
    push_all(session, images, at=clicks)
    session.stop(timeout=60)
    assert replies["water"].result(timeout=60).objects and replies["swan"].result(timeout=60).objects
    got = masks_by_frame(tmp_path / "live")
    assert sorted(got[FRAMES - 1]) == ["1", "2"]  # the click on the swan was the swan again: no third object
    assert all(got[f]["2"][40, 40] for f in range(ASK_AT, ASK_AT + 3))  # the water where it was clicked
    # the swan went on through both: tracked from its last mask past the first click, re-anchored at the second
    assert min(mask_iou(got[f]["1"], truth[f]) for f in range(FRAMES)) > 0.6
    assert all(mask_iou(got[f]["1"], got[f]["2"]) < 0.1 for f in range(ASK_AT, FRAMES))
    result = check_output(tmp_path / "live")
    assert [o["request"] for o in result["objects"]] == [0, 1]
    assert [g["request"] for g in result["groundings"]] == [0, 1, 2]


def test_a_live_session_refuses_what_it_cannot_do(lite_backend, frames_dir, tmp_path):
    assistant = Assistant(lite_backend)
    with pytest.raises(UserError, match="live source only"):
        assistant.open(frames_dir, out=tmp_path / "x")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "mine.txt").write_text("a person's file")
    with pytest.raises(UserError, match="not empty|already has"):
        assistant.open(LiveSource.pushed(), out=tmp_path / "used")
    assert (tmp_path / "used" / "mine.txt").read_text() == "a person's file"
    source = LiveSource.pushed()
    session = assistant.open(source, out=tmp_path / "ended")
    source.end()
    with pytest.raises(UserError, match="no frame came"):
        session.wait(timeout=30)
    with pytest.raises(UserError, match="has ended"):
        session.ask("a black swan")
    assert not (tmp_path / "ended").exists() or not any((tmp_path / "ended").iterdir())


def test_a_sa2va_checkpoint_streams_as_its_offline_causal_run(qwen25_fixture, swan, tmp_path):
    """The SAM 2 tracker of a Sa2VA checkpoint (the Qwen2.5-VL fixture, its answer forced to one [SEG]) over
    pushed frames: exactly its ordinary call over the same frames as a video, grounded on the first."""
    from agent.pipeline import Pipeline
    from agent.video.source import VideoSource
    from test_sa2va_fixture import load_fixture

    images, _ = swan
    backend = load_fixture(qwen25_fixture)
    backend.grounder.teacher = {"segment": "Sure, [SEG]."}
    source = LiveSource.pushed("frames", queue_size=FRAMES)  # all queued first: none dropped
    for image in images:
        source.push(image)
    source.end()
    run = run_live(source, backend, Request("a black swan", mode="direct"), tmp_path / "live")
    assert run.handled == FRAMES and run.objects
    reply = Pipeline(backend, images[:1], progress=False).run(Request("a black swan", mode="direct"))
    offline = list(backend.tracker.track(VideoSource.open(images), reply.prompts, {0: images[0]}))
    got = masks_by_frame(tmp_path / "live")
    assert any(m.any() for f in got.values() for m in f.values())
    for expected in offline:
        for object_id, mask in expected.masks.items():
            assert np.array_equal(got[expected.frame_index][str(object_id)], mask), expected.frame_index


def test_a_long_stream_holds_no_more_after_a_hundred_frames_than_one_frame(lite_backend, refdavis, tmp_path):
    """Memory flat in the stream's length: what the run holds (Python's own allocations and numpy's arrays, traced
    from frame 20 on, after a collection) grows from frame 60 to frame 110 by less than one frame's pixels, the
    yardstick: keeping the frames, their masks or their records would grow it by fifty of them."""
    import gc
    import threading
    import tracemalloc

    from agent.live import LiveSegmentation

    files = sorted((refdavis / "JPEGImages" / "blackswan").glob("*.jpg"))
    images = [Image.open(p).convert("RGB").resize((160, 90)) for p in files]
    one_frame = 160 * 90 * 3
    source = LiveSource.pushed("long", queue_size=4)
    run = LiveSegmentation(source, lite_backend, Request("a black swan"), tmp_path / "live")
    held: dict[int, int] = {}
    snapshots: dict[int, tracemalloc.Snapshot] = {}
    images_alive: dict[int, int] = {}

    def measure(frame, masks) -> None:
        if frame.index == 20:
            tracemalloc.start()
        elif frame.index in (60, 110):
            gc.collect()
            held[frame.index] = tracemalloc.get_traced_memory()[0]
            snapshots[frame.index] = tracemalloc.take_snapshot()  # where it grew, if it does
            # pixels live outside Python's allocator: the images alive are counted instead
            images_alive[frame.index] = sum(isinstance(o, Image.Image) for o in gc.get_objects())

    run.on_frame = measure
    thread = threading.Thread(target=run.run)
    thread.start()
    try:
        for i in range(111):
            source.push(images[i % len(images)])
            wait_until(lambda: run.runner.writer.frames_written >= i + 1 or not thread.is_alive())
        source.end()
        thread.join(60)
    finally:
        tracemalloc.stop()
    assert run.runner.writer.frames_written == 111 and run.runner.objects
    grew = [str(stat) for stat in snapshots[110].compare_to(snapshots[60], "filename")[:3]]
    assert held[110] - held[60] < one_frame, (held, one_frame, grew, [t.name for t in threading.enumerate()])
    assert images_alive[110] <= images_alive[60] + 2, images_alive  # (the frame at hand, a queued one)
