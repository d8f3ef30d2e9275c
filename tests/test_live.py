"""A live stream segmented as it arrives: a real shared video (blackswan) written as MPEG-TS into a named pipe at
real-time pace by a helper thread, read by `rvos segment PIPE … --live` (lite, loaded once per session)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from support.live_stream import encode_ts as encode_files, http_stream

FRAMES = 20
FPS = 10


def encode_ts(frames_dir: Path, path: Path, count: int = FRAMES, fps: int = FPS) -> Path:
    """The first `count` frames as an H.264 MPEG-TS file, encoded as a live encoder would (zerolatency)."""
    return encode_files(sorted(frames_dir.glob("*.jpg"))[:count], path, fps)


def decoded_frames(path: Path) -> list[Image.Image]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_image() for frame in container.decode(video=0)]


class Feeder(threading.Thread):
    """Writes the packets of an MPEG-TS file into a named pipe at `fps` packets a second (the same encoded
    stream: a reader decodes exactly the file's frames). After `pause_after` packets it waits for `resume()`
    to say go on (a condition on the reader's output), and records when each packet went out."""

    def __init__(self, ts: Path, fifo: Path, fps: float = FPS, pause_after: int | None = None, resume=None):
        super().__init__(daemon=True)
        self.ts, self.fifo, self.fps = ts, fifo, fps
        self.pause_after, self.resume = pause_after, resume or (lambda: True)
        self.sent = 0
        self.finished_at: float | None = None
        self.resumed = False
        self.hold = threading.Event()  # set: keep the pipe open after the last packet until `release` is set
        self.release = threading.Event()
        self.error: Exception | None = None

    def run(self) -> None:
        import av

        try:
            # the pipe opened by Python, which lets go of the GIL while open() waits for the reader: PyAV opens an
            # output path holding it, and the reader (a thread of this process) could then never get to open its end
            with av.open(str(self.ts)) as source, open(self.fifo, "wb", buffering=0) as pipe, \
                    av.open(pipe, "w", format="mpegts", container_options={"flush_packets": "1"}) as sink:
                into = sink.add_stream_from_template(source.streams.video[0])
                start = time.monotonic()
                for packet in source.demux(source.streams.video[0]):
                    if packet.dts is None:  # the demuxer's empty flush packet
                        continue
                    if self.pause_after is not None and self.sent == self.pause_after:
                        deadline = time.monotonic() + 300
                        while not self.resume() and time.monotonic() < deadline:
                            time.sleep(0.05)
                        self.resumed = bool(self.resume())
                        start = time.monotonic() - self.sent / self.fps
                    time.sleep(max(0.0, start + self.sent / self.fps - time.monotonic()))
                    packet.stream = into
                    sink.mux(packet)
                    self.sent += 1
                self.finished_at = time.monotonic()
                if self.hold.is_set():
                    self.release.wait(300)
        except Exception as exc:  # the reader went away (a broken pipe): recorded, the test decides
            self.error = exc


def playable_frames(path: Path) -> int:
    """How many frames a player decodes from `path` as it is now (0: not a video yet)."""
    import av

    try:
        with av.open(str(path)) as container:
            return sum(1 for _ in container.decode(video=0))
    except (av.error.FFmpegError, OSError):
        return 0


def lines(path: Path) -> list[dict]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.endswith("}")]


@pytest.fixture(scope="module")
def swan_ts(refdavis, tmp_path_factory) -> Path:
    return encode_ts(refdavis / "JPEGImages" / "blackswan", tmp_path_factory.mktemp("live") / "swan.ts")


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "stream"
    os.mkfifo(path)
    return path


@pytest.fixture
def lite_cli(lite_backend, monkeypatch):
    """`rvos segment --backend lite` with the session's loaded lite backend (every check still runs)."""
    import agent.backends

    monkeypatch.setattr(agent.backends, "load_backend", lambda *args, **kwargs: lite_backend)
    return lite_backend


def check_output(out: Path) -> dict:
    """Every file valid: result.json whole, its frames the lines of frames.jsonl, one PNG per line."""
    from agent.writers.palette import read_palette_png
    from agent.masks import decode_rle

    result = json.loads((out / "result.json").read_text())
    logged = lines(out / "frames.jsonl")
    assert result["frames"] == logged
    assert result["frames_handled"] == len(logged)
    assert result["frames_handled"] + result["dropped_frames"] == result["frames_received"]
    assert sorted(p.stem for p in (out / "masks").iterdir()) == [r["name"] for r in logged]
    assert [r["frame"] for r in logged] == sorted({r["frame"] for r in logged})  # in order, each once
    last = logged[-1]
    labels = read_palette_png(out / "masks" / f"{last['name']}.png")
    for object_id, obj in last["objects"].items():
        assert np.array_equal(labels == int(object_id), decode_rle(obj["rle"]))
    return result


def test_live_pipe_results_arrive_while_streaming_and_equal_the_offline_causal_run(lite_cli, swan_ts, fifo, tmp_path, capsys):
    out = tmp_path / "out"
    seen: dict[str, int] = {}

    def results_on_disk() -> bool:
        seen["lines"], seen["overlay"] = len(lines(out / "frames.jsonl")), playable_frames(out / "overlay.mp4")
        return seen["lines"] >= 2 and seen["overlay"] >= 1

    # the stream pauses half-way until results are on disk: they must come while it is still arriving, the
    # overlay too (a fragmented MP4 plays while it grows)
    feeder = Feeder(swan_ts, fifo, pause_after=FRAMES // 2, resume=results_on_disk)
    feeder.start()
    code, stdout, stderr = run_cli(capsys, "segment", fifo, "a black swan", "--backend", "lite", "--out", out, "--queue", 64)
    feeder.join(10)
    assert code == 0, stderr
    assert feeder.resumed and feeder.error is None
    result = check_output(out)
    assert result["frames_received"] == feeder.sent == FRAMES
    assert result["dropped_frames"] == 0 and result["ended"] == "the stream ended"
    assert result["latency_ms"]["p50"] > 0 and result["latency_ms"]["p95"] >= result["latency_ms"]["p50"]
    assert seen["overlay"] <= seen["lines"] < FRAMES and playable_frames(out / "overlay.mp4") == FRAMES

    # the offline causal run with the same settings on the same frames: the request on frame 0 through the one
    # pipeline, then the tracker's ordinary call over the whole decoded video (a VideoSource), forwards
    from agent.masks import decode_rle
    from agent.pipeline import Pipeline, Request
    from agent.video.source import VideoSource

    frames = decoded_frames(swan_ts)
    reply = Pipeline(lite_cli, frames[:1], progress=False).run(Request("a black swan"))
    assert reply.prompts and all(p.frame_index == 0 for p in reply.prompts)
    offline = list(lite_cli.tracker.track(VideoSource.open(frames), reply.prompts, {0: frames[0]}))
    assert len(offline) == FRAMES
    for record, expected in zip(result["frames"], offline):
        assert record["frame"] == expected.frame_index
        assert set(record["objects"]) == {str(i) for i in expected.masks}
        for object_id, mask in expected.masks.items():
            assert np.array_equal(decode_rle(record["objects"][str(object_id)]["rle"]), mask), record["frame"]
    assert any(decode_rle(o["rle"]).any() for r in result["frames"] for o in r["objects"].values())


def test_live_a_mask_on_the_first_frame_is_tracked_as_the_offline_causal_run_tracks_it(lite_cli, swan_ts, fifo, refdavis, tmp_path, capsys):
    out = tmp_path / "out"
    first = sorted((refdavis / "Annotations" / "blackswan").glob("*.png"))[0]
    feeder = Feeder(swan_ts, fifo)
    feeder.start()
    code, _, stderr = run_cli(capsys, "segment", fifo, "--mask", first, "--backend", "lite", "--out", out, "--queue", 64)
    feeder.join(10)
    assert code == 0, stderr
    result = check_output(out)
    assert result["dropped_frames"] == 0 and result["objects"] == [{"id": 1, "produced_by": "mask prompt", "request": 0}]

    from agent.masks import decode_rle
    from agent.video.source import VideoSource
    from agent.visual_syntax import command_line_prompts

    frames = decoded_frames(swan_ts)
    prompts = command_line_prompts(len(frames), frames[0].size, masks=[str(first)])
    offline = list(lite_cli.tracker.track(VideoSource.open(frames), prompts, {0: frames[0]}))
    for record, expected in zip(result["frames"], offline, strict=True):
        assert np.array_equal(decode_rle(record["objects"]["1"]["rle"]), expected.masks[1]), record["frame"]


@pytest.mark.parametrize("prompt, message", [(["--point", "10,10@3"], "drop its @FRAME"),
                                             (["--box", "10,10,2000,200"], "leaves the 854x480 frame")])
def test_live_a_visual_prompt_is_checked_against_the_stream_before_a_model_loads(prompt, message, swan_ts, fifo, tmp_path,
                                                                                 monkeypatch, capsys):
    import agent.backends

    monkeypatch.setattr(agent.backends, "load_backend", lambda *a, **k: pytest.fail("a model loaded before the checks"))
    feeder = Feeder(swan_ts, fifo)
    feeder.start()
    code, _, stderr = run_cli(capsys, "segment", fifo, *prompt, "--backend", "lite", "--out", tmp_path / "out")
    assert code == 2 and message in stderr and stderr.count("\n") == 1, stderr
    assert not (tmp_path / "out").exists()
    feeder.join(10)


def test_live_a_loopback_http_stream_is_read_to_its_end(lite_cli, swan_ts, tmp_path, capsys):
    out = tmp_path / "out"
    with http_stream(swan_ts) as url:  # served at the network's pace, far faster than lite: most frames dropped
        code, stdout, stderr = run_cli(capsys, "segment", url, "a black swan", "--backend", "lite", "--out", out)
    assert code == 0, stderr
    result = check_output(out)
    assert result["input"] == url and result["ended"] == "the stream ended"
    assert result["frames_received"] == FRAMES and result["frames_handled"] >= 1
    assert result["frames"][-1]["frame"] == FRAMES - 1  # the newest frame is never the one dropped
    from agent.masks import decode_rle
    assert decode_rle(result["frames"][-1]["objects"]["1"]["rle"]).any()


def test_live_a_slow_consumer_keeps_the_newest_frames_and_counts_the_dropped(lite_cli, swan_ts, fifo, tmp_path, capsys):
    out = tmp_path / "out"
    feeder = Feeder(swan_ts, fifo, fps=200)  # far faster than grounding the first frame takes
    feeder.start()
    code, _, stderr = run_cli(capsys, "segment", fifo, "a black swan", "--live", "--backend", "lite", "--out", out, "--queue", 1)
    feeder.join(10)
    assert code == 0, stderr
    result = check_output(out)
    assert result["frames_received"] == feeder.sent == FRAMES
    assert result["dropped_frames"] > 0
    assert result["frames"][-1]["frame"] == FRAMES - 1  # the newest frame is never the one dropped


def test_live_sigterm_mid_stream_ends_cleanly_with_valid_files(lite_cli, swan_ts, fifo, tmp_path, capsys):
    out = tmp_path / "out"

    def two_frames_then_sigterm() -> bool:
        if len(lines(out / "frames.jsonl")) < 2:
            return False
        os.kill(os.getpid(), signal.SIGTERM)  # the run's handler takes it (installed before its first frame)
        return True

    feeder = Feeder(swan_ts, fifo, pause_after=FRAMES // 2, resume=two_frames_then_sigterm)
    feeder.hold.set()  # the stream stays open: only the signal can end the run
    feeder.start()
    try:
        code, stdout, stderr = run_cli(capsys, "segment", fifo, "a black swan", "--backend", "lite", "--out", out)
    finally:
        feeder.release.set()
    assert code == 0, stderr
    result = check_output(out)
    assert result["ended"].startswith("stopped")
    assert 2 <= result["frames_handled"] < FRAMES
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))


def test_live_a_stream_that_sends_nothing_exits_2_and_leaves_nothing(lite_cli, fifo, tmp_path, capsys):
    out = tmp_path / "out"
    closer = threading.Thread(target=lambda: open(fifo, "wb").close(), daemon=True)  # opens the pipe, sends nothing
    closer.start()
    code, _, stderr = run_cli(capsys, "segment", fifo, "a black swan", "--backend", "lite", "--out", out)
    assert code == 2 and "no frame came from" in stderr and stderr.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["-", "--warmup", "0"], "--warmup"),
    (["-", "--max-latency", "-1"], "--max-latency"),
    (["-", "--queue", "0"], "--queue"),
    (["-", "--overwrite"], "replaces nothing"),
    (["/dev/video99"], "does not exist"),
    (["{folder}", "--live"], "is not a stream"),
    (["{folder}", "--max-frames", "3"], "add --live"),
])
def test_live_bad_input_exits_2_before_a_model_loads(args, message, frames_dir, tmp_path, monkeypatch, capsys):
    import agent.backends

    monkeypatch.setattr(agent.backends, "load_backend", lambda *a, **k: pytest.fail("a model loaded before the checks"))
    args = [str(frames_dir) if a == "{folder}" else a for a in args]
    code, _, stderr = run_cli(capsys, "segment", args[0], "a black swan", "--backend", "lite", "--out", tmp_path / "out", *args[1:])
    assert code == 2 and message in stderr and stderr.count("\n") == 1, stderr


def test_live_growing_frames_hand_each_frame_once_and_refuse_to_read_ahead():
    from agent.video.live import GrowingFrames

    frames = GrowingFrames((4, 3))
    images = [Image.new("RGB", (4, 3), (i, 0, 0)) for i in range(3)]
    for image in images[:2]:
        frames.push(image)
    reader = frames.frames(t for t in range(len(frames)) if t != 0)  # as a tracker asks: far past what has arrived
    assert next(reader) == (1, images[1])
    assert frames._frames == {}  # frame 0 (a keyframe, taken elsewhere) and 1 are gone: memory stays flat
    with pytest.raises(RuntimeError, match="before it arrived"):
        next(reader)
