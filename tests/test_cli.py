"""The command line: bad input gets one clear line, exit code 2, no traceback, nothing written."""

import subprocess
import sys
from fractions import Fraction

import pytest

from agent import __version__
from agent.backends.sa2va import checkpoint
from agent.cli import main
from conftest import QWEN25_FIXTURE, require_shared, run_cli


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
        fixture = require_shared(QWEN25_FIXTURE, "the Sa2VA Qwen2.5-VL fixture")
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


# --- cheap checks: an option the backend or protocol would ignore, a device that is not there, a count below 1 ---------


class LoadedAModel(Exception):
    """Raised by the test's loaders: a refusal must come before any model loads."""


@pytest.fixture
def no_model_loads(monkeypatch, tmp_path):
    """Both backends look available and any load fails the test (a double for the loaders: only control flow is tested)."""
    from agent.backends.lite import weights
    from agent.backends.lite.spec import LiteSpec
    from agent.backends.sa2va.spec import Sa2VASpec

    def load(self, model=None, device="cpu", **options):
        raise LoadedAModel(f"{self.name} loaded on {device} with {options}")

    monkeypatch.setattr(weights, "unavailable_reason", lambda: None)
    monkeypatch.setattr(checkpoint, "cached_snapshot", lambda model: tmp_path)
    monkeypatch.setattr(LiteSpec, "load", load)
    monkeypatch.setattr(Sa2VASpec, "load", load)


def fake_gpus(monkeypatch, count: int) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


SEGMENT_REFUSALS = {
    "keyframes 0": (["--keyframes", "0"], "--keyframes must be a whole number of at least 1"),
    "keyframes negative": (["--backend", "sa2va", "--keyframes", "-3"], "--keyframes must be a whole number of at least 1"),
    "no such gpu": (["--backend", "sa2va", "--device", "cuda:7"], "--device cuda:7: this machine has 1 CUDA GPU(s), cuda:0 to cuda:0"),
    "malformed gpu": (["--backend", "sa2va", "--device", "cuda:first"], "unknown device 'cuda:first'; use auto, cpu, cuda or cuda:N"),
    "lite dtype": (["--backend", "lite", "--dtype", "bfloat16"], "the lite backend takes no --dtype"),
    "lite on cuda": (["--backend", "lite", "--device", "cuda"], "the lite backend runs on cpu only; drop --device cuda"),
    "lite sam2 options": (["--backend", "lite", "--inference", "sa2va", "--propagation-weights", "x.pt"],
                          "the lite backend takes no --inference, --propagation-weights"),
    "auto chose lite": (["--dtype", "float16"], "--backend auto chose lite"),
}


@pytest.mark.parametrize("case", sorted(SEGMENT_REFUSALS))
def test_segment_refuses_what_would_be_ignored_before_any_model_loads(case, frames_dir, tmp_path, capsys, monkeypatch, no_model_loads):
    fake_gpus(monkeypatch, 1)
    options, message = SEGMENT_REFUSALS[case]
    code, _, stderr = run_cli(capsys, "segment", frames_dir, "the dog", "--out", tmp_path / "out", *options)
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("rvos: error: ") and message in lines[0], stderr
    assert not (tmp_path / "out").exists()


EVAL_REFUSALS = {
    "semi split": (["--protocol", "semi", "--split", "valid"], "--protocol semi takes no --split"),
    "semi ray": (["--protocol", "semi", "--ray", "auto"], "--protocol semi takes no --ray"),
    "semi answer": (["--protocol", "semi", "--backend", "sa2va", "--answer", "Sure, [SEG]."], "--protocol semi takes no --answer"),
    "semi keyframes": (["--protocol", "semi", "--keyframes", "3"], "--protocol semi takes no --keyframes"),
    "semi dataset": (["--protocol", "semi", "--dataset", "mevis"], "--protocol semi takes no --dataset"),
    "workers without ray": (["--workers", "3"], "--workers N (N ≥ 1) sets the Ray workers"),
    "planner option without planner": (["--planner-max-calls", "0"], "--planner-max-calls needs --planner URL"),
    "lite dtype": (["--protocol", "semi", "--backend", "lite", "--dtype", "bfloat16"], "the lite backend takes no --dtype"),
}


@pytest.mark.parametrize("case", sorted(EVAL_REFUSALS))
def test_eval_refuses_what_would_be_ignored_before_any_model_loads(case, tmp_path, capsys, monkeypatch, no_model_loads):
    fake_gpus(monkeypatch, 0)
    options, message = EVAL_REFUSALS[case]
    code, _, stderr = run_cli(capsys, "eval", tmp_path / "dataset", "--out", tmp_path / "eval", *options)
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("rvos: error: ") and message in lines[0], stderr
    assert not (tmp_path / "eval").exists()


def test_chat_in_planner_mode_needs_a_planner_before_any_model_loads(frames_dir, capsys, no_model_loads):
    code, _, stderr = run_cli(capsys, "chat", frames_dir, "--mode", "planner")
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "--mode planner needs a planner" in stderr, stderr


def test_options_a_backend_honours_reach_its_loader(frames_dir, tmp_path, capsys, monkeypatch, no_model_loads):
    """The checks refuse only what is ignored: lite's keyframe options pass and `auto` keeps lite on the CPU
    on a machine with a GPU, while sa2va gets the GPU."""
    fake_gpus(monkeypatch, 2)
    with pytest.raises(LoadedAModel, match=r"lite loaded on cpu with \{'keyframes': 3, 'keyframe_strategy': 'first'\}"):
        main(["segment", str(frames_dir), "the dog", "--out", str(tmp_path / "a"), "--keyframes", "3", "--keyframe-strategy", "first"])
    with pytest.raises(LoadedAModel, match="sa2va loaded on cuda:1 with .*'dtype': 'bfloat16'"):
        main(["segment", str(frames_dir), "the dog", "--out", str(tmp_path / "b"), "--backend", "sa2va", "--device", "cuda:1",
              "--dtype", "bfloat16"])
    from agent.backends import check_backend

    assert check_backend("lite")[1] == "cpu" and check_backend("sa2va")[1] == "cuda"

