"""The command line: bad input gets one clear line, exit code 2, no traceback, nothing written."""

import subprocess
import sys
from fractions import Fraction

import pytest

from agent import __version__
from agent.backends.sa2va import checkpoint
from agent.cli import main
from conftest import run_cli


def empty_video(path):
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(24))
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        container.start_encoding()  # a valid file header, and not one frame
    return path


def bad_inputs(tmp_path, frames_dir):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x01not a video" * 100)
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "00000.jpg").write_bytes(b"not a jpeg")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    return {
        "missing path": ([tmp_path / "nope.mp4", "the dog"], "does not exist"),
        "corrupt video": ([corrupt, "the dog"], "cannot read video"),
        "empty folder": ([empty, "the dog"], "holds no"),
        "corrupt frame": ([broken, "the dog"], "cannot read image"),
        "zero frames": ([empty_video(tmp_path / "zero.mp4"), "the dog"], "no video frames"),
        "unsupported file": ([tmp_path / "notes.txt", "the dog"], "unsupported file type"),
        "empty instruction": ([frames_dir, "   "], "instruction is empty"),
        "unwritable output": ([frames_dir, "the dog", "--out", a_file / "sub"], "cannot write"),
    }


@pytest.mark.parametrize(
    "case",
    ["missing path", "corrupt video", "empty folder", "corrupt frame", "zero frames", "unsupported file", "empty instruction", "unwritable output"],
)
def test_bad_input_is_one_clear_line(tmp_path, frames_dir, capsys, monkeypatch, case):
    monkeypatch.setattr(checkpoint, "cached_snapshot", lambda model: None)
    args, message = bad_inputs(tmp_path, frames_dir)[case]
    out = tmp_path / "out"
    if "--out" not in args:
        args = [*args, "--out", out]
    if case == "unwritable output":  # fails when writing starts: give it a backend that can load
        fixture = checkpoint.Path(__file__).resolve().parent.parent.parent / "shared/fixtures/sa2va-qwen2_5-vl-tiny"
        if not fixture.is_dir():
            pytest.skip("needs the Sa2VA fixture in ../shared")
        args += ["--backend", "sa2va", "--model", fixture / "checkpoint", "--sam2-config", fixture / "sam2_tiny_test.yaml", "--answer", "Sure, [SEG]."]
    code, stdout, stderr = run_cli(capsys, "segment", *args)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rvos: error: ") and message in lines[0], stderr
    assert "Traceback" not in stderr
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_no_backend_can_run(frames_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(checkpoint, "cached_snapshot", lambda model: None)
    monkeypatch.setenv("RVOS_HOME", str(tmp_path / "empty-home"))  # no lite weights either
    code, _, stderr = run_cli(capsys, "segment", frames_dir, "the dog", "--out", tmp_path / "out")
    assert code == 2 and "no backend can run here" in stderr and "sa2va" in stderr
    assert "rvos weights fetch lite" in stderr  # says how to get the offline backend
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback(tmp_path, capsys):
    from agent.errors import UserError

    with pytest.raises(UserError):
        main(["segment", str(tmp_path / "nope"), "x", "--out", str(tmp_path / "o"), "--debug"])


def test_console_script_version_and_backends():
    bindir = checkpoint.Path(sys.executable).parent
    version = subprocess.run([bindir / "rvos", "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"rvos-agent {__version__}"
    listing = subprocess.run([bindir / "rvos", "backends"], capture_output=True, text=True, check=True)
    assert listing.stdout.startswith("lite") and "\nsa2va" in listing.stdout
