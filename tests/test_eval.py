"""`rvos eval` on the real shared videos: outputs, resuming after a kill, failures, Ray."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def eval_command(root, out, fixture, *extra):
    return [
        sys.executable, "-m", "agent", "eval", str(root), "--out", str(out), "--backend", "sa2va",
        "--model", str(fixture / "checkpoint"), "--sam2-config", str(fixture / "sam2_tiny_test.yaml"),
        "--answer", "Sure, [SEG].", "--mode", "direct", *extra,
    ]


def finished(out):
    return {p: p.stat().st_mtime_ns for p in (out / "scores").glob("*/*.json")} if (out / "scores").is_dir() else {}


def test_eval_resumes_after_a_kill(refdavis, qwen25_fixture, tmp_path):
    out = tmp_path / "eval"
    process = subprocess.Popen(eval_command(refdavis, out, qwen25_fixture), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not finished(out) and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = finished(out)
    assert 1 <= len(before) < 3, "the run should have been killed part-way"
    assert not (out / "report.json").exists()

    done = subprocess.run(eval_command(refdavis, out, qwen25_fixture), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    after = finished(out)
    assert len(after) == 3
    assert all(after[p] == mtime for p, mtime in before.items())  # finished work was not redone
    report = json.loads((out / "report.json").read_text())
    assert report["expressions_done"] == 3 and report["failures"] == {}
    assert not list((out / "predictions").glob("*/.*.tmp"))

    # the same numbers as a run that was never interrupted
    fresh = tmp_path / "fresh"
    subprocess.run(eval_command(refdavis, fresh, qwen25_fixture), check=True, capture_output=True)
    reference = json.loads((fresh / "report.json").read_text())
    for key, scores in reference["expressions"].items():
        assert report["expressions"][key]["JF"] == pytest.approx(scores["JF"], abs=1e-9)
    for name in ("jf_per_video.png", "j_over_time.png"):
        assert (out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_failing_video_is_recorded_and_the_rest_go_on(refdavis, qwen25_fixture, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(refdavis, root, ignore=shutil.ignore_patterns("osvos_predictions"))
    broken = root / "JPEGImages" / "car-shadow" / "00010.jpg"
    original = broken.read_bytes()
    broken.write_bytes(b"not a jpeg")
    out = tmp_path / "eval"
    done = subprocess.run(eval_command(root, out, qwen25_fixture), capture_output=True, text=True)
    assert done.returncode == 1
    report = json.loads((out / "report.json").read_text())
    assert list(report["failures"]) == ["car-shadow/0"] and "cannot read image" in report["failures"]["car-shadow/0"]
    assert report["expressions_done"] == 2

    broken.write_bytes(original)
    done = subprocess.run(eval_command(root, out, qwen25_fixture), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["failures"] == {} and report["expressions_done"] == 3


def test_eval_on_a_local_ray_cluster(refdavis, qwen25_fixture, tmp_path):
    pytest.importorskip("ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = [str(BIN / "ray"), "start", "--head", "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"]
    subprocess.run(start, check=True, capture_output=True, env=env, cwd=tmp_path)
    try:
        out = tmp_path / "eval"
        done = subprocess.run(eval_command(refdavis, out, qwen25_fixture, "--ray", "auto", "--workers", "2"),
                              capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True, env=env)
    report = json.loads((out / "report.json").read_text())
    assert report["expressions_done"] == 3 and report["failures"] == {}
    assert len(list((out / "predictions").glob("*/*/*.png"))) == 50 + 40 + 49
    local = tmp_path / "local"
    subprocess.run(eval_command(refdavis, local, qwen25_fixture), check=True, capture_output=True)
    reference = json.loads((local / "report.json").read_text())
    # Ray's one-thread workers sum in another order: the same masks up to float rounding
    for key, scores in reference["expressions"].items():
        assert report["expressions"][key]["JF"] == pytest.approx(scores["JF"], abs=2e-3)
