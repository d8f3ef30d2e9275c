"""Shared test helpers: the real videos and fixtures in ../shared, the models loaded once per session, and
video encoding with PyAV."""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
# The project's test data (data/: DAVIS videos with masks; fixtures/: tiny official-layout checkpoints with
# reference outputs) lies beside the checkout; RVOS_SHARED points elsewhere.
SHARED = Path(os.environ.get("RVOS_SHARED") or ROOT.parent / "shared")
REFDAVIS = SHARED / "data" / "refdavis-mini3"
DAVIS16 = SHARED / "data" / "davis16-dev9"
DEV21 = SHARED / "data" / "davis16-dev21"
FIXTURES = SHARED / "fixtures"
QWEN25_FIXTURE = FIXTURES / "sa2va-qwen2_5-vl-tiny"
VIDEOS = ("blackswan", "car-shadow", "libby")


def shared_required() -> bool:
    """Under CI (CI=true, as CI services set it) or RVOS_REQUIRE_SHARED=1 (`.ci/run`), missing shared data
    fails the run: otherwise CI could pass with every fixture, metric and real-video test skipped."""
    def on(name: str) -> bool:
        return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")

    return on("CI") or on("RVOS_REQUIRE_SHARED")


def require_shared(path: Path, what: str) -> Path:
    """`path` (inside ../shared) when it is there; else skip with the reason, or fail under CI."""
    if path.exists():
        return path
    message = (f"{what} not found at {path}: put the project's shared test data (data/, fixtures/) at "
               f"{ROOT.parent / 'shared'} or point RVOS_SHARED at it")
    if shared_required():
        pytest.fail(f"{message} (required under CI / RVOS_REQUIRE_SHARED)", pytrace=False)
    pytest.skip(message)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """The same rule for a test that checks ../shared itself and skips (its reason names ../shared)."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and shared_required() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if "../shared" in reason or str(SHARED) in reason:
            report.outcome = "failed"
            report.longrepr = f"{reason} (required under CI / RVOS_REQUIRE_SHARED)"


@pytest.fixture(scope="session")
def refdavis() -> Path:
    return require_shared(REFDAVIS, "real evaluation data (refdavis-mini3)")


@pytest.fixture(scope="session")
def davis16() -> Path:
    return require_shared(DAVIS16, "real evaluation data (davis16-dev9)")


@pytest.fixture(scope="session")
def dev21() -> Path:
    return require_shared(DEV21, "real evaluation data (davis16-dev21)")


@pytest.fixture(scope="session")
def refdavis_meta(refdavis) -> dict:
    return json.loads((refdavis / "meta_expressions.json").read_text())


@pytest.fixture(scope="session")
def qwen25_fixture() -> Path:
    return require_shared(QWEN25_FIXTURE, "the Sa2VA Qwen2.5-VL fixture")


@pytest.fixture(scope="session")
def lite_backend():
    """The lite backend, loaded once per session. Its tracker keeps a call's state in that call (a
    `LiteTrackState`; minisam's memo of recent embeddings is per thread and keyed by the image), so one
    test's run does not change another's result; a test that changes a setting builds its own tracker
    from these parts."""
    from agent.backends.lite import weights
    from agent.backends.lite.spec import load_lite

    reason = weights.unavailable_reason()
    if reason:
        pytest.fail(f"lite weights missing ({reason}); `make test` fetches them with `rvos weights fetch lite`")
    return load_lite()


@pytest.fixture(scope="session")
def lite_assistant(lite_backend):
    from agent.assistant import Assistant

    return Assistant(lite_backend)


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
