"""Shared test helpers: the real videos and fixtures in ../shared, and video encoding with PyAV."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
REFDAVIS = SHARED / "data" / "refdavis-mini3"
DAVIS16 = SHARED / "data" / "davis16-dev9"
FIXTURES = SHARED / "fixtures"
QWEN25_FIXTURE = FIXTURES / "sa2va-qwen2_5-vl-tiny"
VIDEOS = ("blackswan", "car-shadow", "libby")


@pytest.fixture(scope="session")
def refdavis() -> Path:
    if not REFDAVIS.is_dir():
        pytest.skip(f"real evaluation data not found at {REFDAVIS} (../shared is absent)")
    return REFDAVIS


@pytest.fixture(scope="session")
def davis16() -> Path:
    if not DAVIS16.is_dir():
        pytest.skip(f"real evaluation data not found at {DAVIS16} (../shared is absent)")
    return DAVIS16


@pytest.fixture(scope="session")
def refdavis_meta(refdavis) -> dict:
    return json.loads((refdavis / "meta_expressions.json").read_text())


@pytest.fixture(scope="session")
def qwen25_fixture() -> Path:
    if not QWEN25_FIXTURE.is_dir():
        pytest.skip(f"Sa2VA fixture not found at {QWEN25_FIXTURE} (../shared is absent)")
    return QWEN25_FIXTURE


@pytest.fixture(scope="session")
def lite_assistant():
    from agent.assistant import Assistant
    from agent.backends.lite import weights

    if weights.unavailable_reason():
        pytest.fail("lite weights missing; `make test` fetches them")
    return Assistant.load("lite")


@pytest.fixture(scope="session")
def swan_clip(refdavis, tmp_path_factory) -> Path:
    """The first 20 frames of blackswan as an H.264 mp4 (24 fps): what a person would upload."""
    path = tmp_path_factory.mktemp("clips") / "swan.mp4"
    encode_video(refdavis / "JPEGImages" / "blackswan", path, "libx264", limit=20)
    return path


@pytest.fixture
def frames_dir(tmp_path):
    """A tiny video: three 16×12 frames in a folder."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (16, 12), (i * 50, 0, 0)).save(folder / f"{i:05d}.png")
    return folder


def run_cli(capsys, *args):
    """`rvos ARGS` in this process: (exit code, stdout, stderr)."""
    from agent.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def encode_video(frames_dir: Path, path: Path, codec: str, fps: int = 24, limit: int | None = None,
                 keyframe_every: int | None = None) -> int:
    """Encode a folder of frames into a video file with PyAV; returns the frame count."""
    import av

    files = sorted(frames_dir.glob("*.jpg"))[:limit]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        width, height = Image.open(files[0]).size
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if keyframe_every:
            stream.gop_size = keyframe_every
        for file in files:
            frame = av.VideoFrame.from_image(Image.open(file).convert("RGB"))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return len(files)


def count_video_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).mean())
