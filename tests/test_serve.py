"""`rvos serve` without a browser: what it refuses before loading a model, and the per-browser workspace
(limits, results equal to `rvos segment`'s, stop, isolation, clean-up) on the lite backend."""

import json
import threading
import zipfile

import numpy as np
import pytest

from agent.errors import UserError
from agent.pipeline import segment
from agent.serve.server import ServeOptions, check_options, find_examples
from agent.serve.workspace import Cancelled, Limits, Workspace
from agent.writers import read_palette_png
from conftest import count_video_frames, encode_video, run_cli


def test_a_public_host_needs_authentication(capsys, monkeypatch):
    monkeypatch.delenv("RVOS_SERVE_AUTH", raising=False)
    code, _, err = run_cli(capsys, "serve", "--host", "0.0.0.0", "--backend", "lite")
    assert code == 2 and "refusing to listen on 0.0.0.0 without authentication" in err and "--auth" in err
    assert "Traceback" not in err
    code, _, err = run_cli(capsys, "serve", "--auth", "no-colon")
    assert code == 2 and "USER:PASSWORD" in err
    assert check_options(ServeOptions(host="127.0.0.1")) is None
    assert check_options(ServeOptions(host="0.0.0.0", auth="ann:secret")) == ("ann", "secret")
    monkeypatch.setenv("RVOS_SERVE_AUTH", "bob:pw")
    assert check_options(ServeOptions(host="192.0.2.1")) == ("bob", "pw")
    with pytest.raises(UserError, match="concurrency"):
        check_options(ServeOptions(concurrency=0))


def new_workspace(assistant, limits=Limits()):
    return Workspace(assistant, limits, threading.Lock())


def test_bad_uploads_and_questions_get_one_clear_message(lite_assistant, swan_clip, tmp_path):
    ws = new_workspace(lite_assistant)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    corrupt = tmp_path / "broken.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    cases = [
        (ws, text, "not a video this app reads"),
        (ws, corrupt, "cannot read video"),
        (new_workspace(lite_assistant, Limits(max_frames=10)), swan_clip, "has 20 frames; this server takes at most 10"),
        (new_workspace(lite_assistant, Limits(max_side=500)), swan_clip, "854×480"),
        (new_workspace(lite_assistant, Limits(max_upload_mb=0.01)), swan_clip, "at most 0.01 MB"),
    ]
    for workspace, upload, message in cases:
        with pytest.raises(UserError, match=message):
            workspace.open_upload(upload)
    with pytest.raises(UserError, match="upload a video"):
        ws.ask("a swan", "direct")
    ws.open_upload(swan_clip)  # the same workspace still works after the errors
    assert len(ws.opened.video) == 20
    for question, message in [("  ", "the question is empty"), ("x" * 1001, "1001 characters; at most 1000")]:
        with pytest.raises(UserError, match=message):
            ws.ask(question, "direct")
    for name in ("../../etc/passwd", "/etc/passwd", "blackswan"):
        with pytest.raises(UserError, match="no example"):
            ws.open_example(name, {"refdavis-mini3/blackswan": swan_clip})


@pytest.mark.parametrize("suffix, codec", [(".webm", "libvpx-vp9"), (".mov", "libx264"), (".avi", "mpeg4"), (".mkv", "libx264")])
def test_every_offered_container_opens(lite_assistant, refdavis, tmp_path, suffix, codec):
    clip = tmp_path / f"clip{suffix}"
    encode_video(refdavis / "JPEGImages" / "blackswan", clip, codec, limit=4)
    ws = new_workspace(lite_assistant)
    ws.open_upload(clip)
    assert len(ws.opened.video) == 4 and ws.frame_image(3).size == (854, 480)
    ws.close()


def test_the_download_equals_what_rvos_segment_writes(lite_assistant, swan_clip, tmp_path):
    ws = new_workspace(lite_assistant)
    ws.open_upload(swan_clip)
    reply = ws.ask("a black swan", "direct")
    assert reply.objects and [m["role"] for m in ws.messages] == ["user", "assistant", "assistant"]
    assert ws.messages[2]["metadata"]["title"].startswith("How")  # the trace, folded under the answer
    rendered = ws.render()
    with zipfile.ZipFile(rendered.archive) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "page")
    assert {"result.json", "overlay.mp4"} <= names and sum(n.startswith("masks/") and n.endswith(".png") for n in names) == 20
    assert count_video_frames(tmp_path / "page" / "overlay.mp4") == 20

    cli = segment(swan_clip, "a black swan", lite_assistant.backend, tmp_path / "cli", progress=False).out
    for frame in range(20):
        ours, theirs = (read_palette_png(root / "masks" / f"{frame:05d}.png") for root in (tmp_path / "page", cli))
        assert ours.any() and np.array_equal(ours, theirs), frame
    ours, theirs = (json.loads((root / "result.json").read_text()) for root in (tmp_path / "page", cli))
    assert [f["objects"] for f in ours["frames"]] == [f["objects"] for f in theirs["frames"]]
    assert ours["instruction"] == theirs["instruction"] and ours["answer"] == theirs["answer"]


def test_stop_ends_the_work_and_changes_nothing(lite_assistant, swan_clip):
    ws = new_workspace(lite_assistant)
    ws.open_upload(swan_clip)
    seen = []

    def stop_after_three(done, total, what):
        seen.append((done, what))
        if done == 3:
            ws.cancel.set()

    with pytest.raises(Cancelled):
        ws.ask("a black swan", "direct", stop_after_three)
    assert not ws.opened.objects.objects and not ws.opened.history and not ws.messages
    assert seen[-1][0] == 3  # it stopped there, not at the end

    ws.ask("a black swan", "direct")
    session = ws.opened
    frames_before = [dict(f) for f in session.objects.frames]
    prompts_before = dict(session.objects.objects[1].prompts)
    with pytest.raises(Cancelled):
        ws.click(0, 300.0, 300.0, False, 1, stop_after_three)
    assert session.objects.frames == frames_before and session.objects.objects[1].prompts == prompts_before
    assert not session.objects.objects[1].corrected
    reply = ws.click(0, 300.0, 300.0, False, 1)  # and the next job runs
    assert reply.trace[-1].kind == "correct"


def test_workspaces_keep_their_own_state_and_are_removed(lite_assistant, swan_clip):
    first, second = new_workspace(lite_assistant), new_workspace(lite_assistant)
    assert first.folder != second.folder
    first.open_upload(swan_clip)
    second.open_upload(swan_clip)
    first.ask("a black swan", "direct")
    first.rename(1, "the swan")
    first.ask("a black swan", "direct")  # a later grounding keeps the name a person gave
    assert first.opened.objects.objects[1].description == "the swan"
    assert not second.opened.objects.objects and not second.messages
    first.render()
    assert any(first.folder.rglob("*.zip"))
    first.close()
    assert not first.folder.exists() and second.folder.exists()
    second.close()


def test_examples_are_found_by_name(refdavis, tmp_path):
    examples = find_examples(refdavis.parent)
    assert examples["refdavis-mini3/blackswan"] == refdavis / "JPEGImages" / "blackswan"
    assert find_examples(tmp_path / "nothing-here") == {}
