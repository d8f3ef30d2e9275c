"""`rvos serve` without a browser: what it refuses before loading a model, and the per-browser workspace
(limits, results equal to `rvos segment`'s, stop, isolation, clean-up, bounds) on the lite backend; the
session cap and error messages through the page's own handlers and a server driven by gradio's client."""

import json
import logging
import os
import socket
import tempfile
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image

from agent.errors import UserError
from agent.pipeline import segment
from agent.reply import Reply
from agent.video import VideoSource
from agent.serve import server
from agent.serve.server import ServeOptions, check_options, find_examples
from agent.serve.workspace import FRAME_VIEWS_KEPT, Cancelled, Limits, Workspace
from agent.writers import read_palette_png
from conftest import ROOT, count_video_frames, encode_video, run_cli


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
    code, _, err = run_cli(capsys, "serve", "--max-sessions", "0")
    assert code == 2 and "--max-sessions must be at least 1" in err


def new_workspace(assistant, limits=Limits()):
    return Workspace(assistant, limits, threading.Lock())


@pytest.fixture(scope="module")
def short_clip(refdavis, tmp_path_factory):
    """The first 6 frames of blackswan as an mp4: enough for what the bounds and the cap need, and quick."""
    path = tmp_path_factory.mktemp("short") / "swan6.mp4"
    encode_video(refdavis / "JPEGImages" / "blackswan", path, "libx264", limit=6)
    return path


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
    with zipfile.ZipFile(ws.download()) as archive:
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
    ws.close()


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
    ws.close()


def test_stop_lands_while_the_tracker_works_backwards(lite_assistant, swan_clip):
    """lite tracks the swan from its surest detection (frame 14 here: scores 0.10–0.12 on the keyframes) back to
    frame 0 before any frame comes out: that pass shows its progress, and a stop during it ends the work there."""
    ws = new_workspace(lite_assistant)
    ws.open_upload(swan_clip)
    seen = []

    def stop_after_three(done, total, what):
        seen.append((done, total, what))
        if done == 3:
            ws.cancel.set()

    with pytest.raises(Cancelled):
        ws.ask("a black swan", "direct", stop_after_three)
    start = seen[1][1]  # the backward pass's length: the surest detection's frame
    assert start > 3 and seen[1:] == [(done, start, "track (backwards)") for done in (1, 2, 3)], seen
    assert not ws.opened.objects.objects and not ws.messages
    seen.clear()
    ws.ask("a black swan", "direct", lambda *step: seen.append(step))
    backwards = [step for step in seen if step[2] == "track (backwards)"]
    assert backwards[-1] == (start, start, "track (backwards)") and seen[-1] == (20, 20, "track")
    assert seen.index(backwards[-1]) < seen.index((1, 20, "track"))  # the whole backward pass comes first
    ws.close()


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
    first.download()
    assert any(first.folder.rglob("*.zip"))
    first.close()
    assert not first.folder.exists() and second.folder.exists()
    second.close()


def test_examples_are_found_by_name(refdavis, tmp_path):
    examples = find_examples(refdavis.parent)
    assert examples["refdavis-mini3/blackswan"] == refdavis / "JPEGImages" / "blackswan"
    assert find_examples(tmp_path / "nothing-here") == {}


def test_the_shared_videos_are_examples_only_beside_a_git_checkout(tmp_path, monkeypatch):
    """An installed package never looks at `../shared/data` beside it; a checkout that has it does."""
    package_root = tmp_path / "site-packages"  # where `agent/` sits: an installed package's parent
    (package_root / "agent" / "serve").mkdir(parents=True)
    video = tmp_path / "shared" / "data" / "clips" / "JPEGImages" / "swan"
    video.mkdir(parents=True)
    Image.new("RGB", (16, 12)).save(video / "00000.jpg")
    monkeypatch.setattr(server, "REPOSITORY", package_root)
    assert find_examples() == {}
    (package_root / ".git").mkdir()
    assert find_examples() == {"clips/swan": video}


def test_what_a_session_keeps_is_bounded(lite_assistant, short_clip):
    """The upload is stored once, the session keeps its latest reply only, the overlay is written again
    only when the masks change, the zip only when asked for, and only the last few frame views stay."""
    ws = new_workspace(lite_assistant)
    ws.open_upload(short_clip)
    (stored,) = ws.folder.rglob("upload.mp4")
    assert os.stat(stored).st_ino == os.stat(short_clip).st_ino  # linked, not copied
    ws.ask("a black swan", "direct")
    overlay = ws.render()
    assert count_video_frames(overlay) == 6 and not any(ws.folder.rglob("*.zip")) and not any(ws.folder.rglob("*.png"))
    ws.rename(1, "the swan")
    assert ws.render() == overlay and overlay.exists()  # a name is not in the overlay: nothing drawn again
    archive = ws.download()
    assert ws.download() == archive  # asked again with nothing changed: the same file, not built again
    ws.click(0, 300.0, 300.0, False, 1)
    assert not archive.exists()  # a change makes the old download stale: it goes
    corrected = ws.render()
    assert corrected != overlay and corrected.exists() and not overlay.exists()
    assert len(ws.opened.replies) == 1 and ws.opened.replies[-1].trace[-1].kind == "correct"
    for frame in range(FRAME_VIEWS_KEPT + 3):
        shown = ws.frame_file(frame)
    assert shown.exists() and len(list(shown.parent.iterdir())) == FRAME_VIEWS_KEPT
    with zipfile.ZipFile(ws.download()) as zipped:
        assert json.loads(zipped.read("result.json"))["objects"] == [{"id": 1, "produced_by": "the swan"}]
    assert len(list(ws.folder.rglob("*.zip"))) == 1
    ws.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_more_sessions_than_the_cap_are_turned_away_and_the_others_served(lite_assistant, short_clip, monkeypatch):
    """A real server (in this process) with --max-sessions 2 and three of gradio's clients (each its own
    browser session): the third is told the server is busy, the two keep working, and once one leaves
    the third gets in."""
    import gradio as gr
    from gradio_client import Client

    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    options = ServeOptions(port=free_port(), max_sessions=2)
    app = server.make_app(lite_assistant, options)
    app.examples = {"swan": short_clip}
    page = server.launch(app, options, block=False)
    try:
        first, second, third = (Client(f"http://127.0.0.1:{options.port}/", verbose=False) for _ in range(3))
        for client in (first, second):
            assert "Opened **swan**: 6 frames" in client.predict("swan", api_name="/open_example")[0]
        refused = third.predict("swan", api_name="/open_example")[0]
        assert "The server is busy: 2 sessions are open; try again in a few minutes" in refused
        assert len(app.live) == 2 and "busy" in app.greet(gr.Request(session_hash=third.session_hash))  # also on opening the page
        assert "busy" not in app.greet(gr.Request(session_hash=first.session_hash))
        assert "1 object(s) found" in first.predict("a black swan", "direct", 0, api_name="/ask")[0]  # still served
        with zipfile.ZipFile(first.predict(api_name="/download")[1]) as archive:
            assert sum(n.startswith("masks/") and n.endswith(".png") for n in archive.namelist()) == 6
        assert "Opened **swan**" in second.predict("swan", api_name="/open_example")[0]
        app.closed(gr.Request(session_hash=second.session_hash))  # the second tab is closed
        assert "Opened **swan**" in third.predict("swan", api_name="/open_example")[0]
    finally:
        page.close()
        app.close_all()
    assert not app.live


def test_an_internal_error_shows_no_traceback_and_no_server_path(lite_assistant, short_clip, monkeypatch, caplog):
    """A fault of ours (a failure injected into the session) is logged with its traceback on the server;
    the page gets a short message with a reference, and a person's mistake shows no server folder either."""
    import gradio as gr

    from agent.assistant.session import Session
    from agent.serve.app import App, _guarded

    app = App(lite_assistant, Limits(), {}, idle_seconds=60, max_sessions=2)
    request = gr.Request(session_hash="visitor")
    view = 9  # the outputs every change updates
    ws = _guarded(app.open_video, view + 1)(None, str(short_clip), request)[0]
    secret = ws.folder / "video-1" / "internal.py"

    def broken(self, question, mode="auto", max_retries=2):
        raise RuntimeError(f"tracker state lost, see {secret} and {ROOT}/agent/assistant/session.py")

    monkeypatch.setattr(Session, "ask", broken)
    with caplog.at_level(logging.ERROR, logger="rvos.serve"):
        status = _guarded(app.ask, view + 1)(ws, "a black swan", "direct", 0, request)[1]
    assert "something went wrong on the server" in status and "reference" in status
    for leak in ("Traceback", "RuntimeError", str(ws.folder), str(ROOT), tempfile.gettempdir() + "/"):
        assert leak not in status, leak
    assert "Traceback" in caplog.text and str(secret) in caplog.text  # the server's log has it all

    corrupt = ws.folder.parent / f"{ws.folder.name}-corrupt.mp4"
    corrupt.write_bytes(bytes(range(256)) * 400)
    try:
        status = _guarded(app.open_video, view + 1, cleared=(view,))(ws, str(corrupt), request)[1]
    finally:
        corrupt.unlink()
    assert "cannot read video upload.mp4" in status and tempfile.gettempdir() + "/" not in status
    app.close_all()
    assert not ws.folder.exists()


def overlapping_asks(app, clip, timeout):
    """Two browser sessions ask at the same moment; each job, on its first tracked frame, waits (up to
    `timeout` s) for the other to reach its own: only jobs that run at the same time both get through."""
    both_tracking = threading.Barrier(2, timeout=timeout)
    outcomes = {}

    def waiting_for_the_other(done, total, what):
        if done == 1 and what == "track":
            both_tracking.wait()

    def ask(name):
        ws = Workspace(app.assistant, Limits(), app.model_lock)
        ws.open_upload(clip)
        try:
            outcomes[name] = len(ws.ask("a black swan", "direct", waiting_for_the_other).objects)
        except threading.BrokenBarrierError:
            outcomes[name] = "serialised"
        finally:
            ws.close()

    threads = [threading.Thread(target=ask, args=(name,)) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_two_jobs_run_at_once_on_one_thread_safe_model(lite_assistant, short_clip):
    """--concurrency 2 on the lite backend (its state lives in each call): two sessions' questions run on the
    one loaded model at the same time; a backend that is not thread-safe keeps them one after the other."""
    from agent.serve.app import App

    assert lite_assistant.backend.thread_safe
    app = App(lite_assistant, Limits(), {}, idle_seconds=60, max_sessions=2)
    assert overlapping_asks(app, short_clip, timeout=300) == {"first": 1, "second": 1}


def test_a_backend_that_is_not_thread_safe_runs_one_job_at_a_time(lite_assistant, short_clip, monkeypatch):
    from agent.backends.lite.tracker import LiteTracker
    from agent.serve.app import App

    monkeypatch.setattr(LiteTracker, "thread_safe", False)
    assert not lite_assistant.backend.thread_safe
    app = App(lite_assistant, Limits(), {}, idle_seconds=60, max_sessions=2)
    # the first job waits for a second that cannot start until it ends; then the second finds the wait given up
    assert overlapping_asks(app, short_clip, timeout=5) == {"first": "serialised", "second": "serialised"}


def test_the_page_describes_an_object_and_answers_questions_about_it_in_the_chat(lite_assistant, short_clip):
    ws = new_workspace(lite_assistant)
    ws.open_upload(short_clip)
    ws.ask("a black swan", "direct")
    overlay = ws.render()
    described = ws.describe(1, "")
    assert described.mode == "describe" and ws.messages[-2]["content"] == "Describe object 1."
    assert ws.messages[-1]["content"] == described.answer and "bird" in described.answer
    asked = ws.ask("where is it?", "auto")  # a question about the object, from its track
    assert asked.mode == "describe" and "of the frame" in ws.messages[-1]["content"]
    assert ws.render() == overlay  # nothing was tracked again: the overlay stands
    with pytest.raises(UserError, match="no object 4"):
        ws.describe(4, "")
    ws.close()


def test_a_caption_shows_each_phrase_in_its_objects_colour():
    from agent.serve.workspace import PALETTE, caption_html

    reply = Reply("caption", "<p>A man</p> [SEG] walks <p>a dog</p> [SEG].", VideoSource.open(np.zeros((4, 6, 3), np.uint8)),
                  details={"caption": {"text": "A man walks a dog <b>.", "phrases": [{"phrase": "A man", "object": 1}, {"phrase": "a dog", "object": 2}]}})
    shown = caption_html(reply)
    red, green, blue = PALETTE[2]
    assert shown.startswith('<span style="color: rgb(') and "</span> (#1) walks " in shown
    assert f'color: rgb({red}, {green}, {blue}); font-weight: bold">a dog</span> (#2)' in shown and shown.endswith(" &lt;b&gt;.")


def test_the_live_tab_opens_a_stream_url_only_when_allowed_and_only_a_network_stream(lite_assistant, refdavis, tmp_path):
    """--allow-streams off (the default): no way to make the server open a URL. On: network streams only, never a
    path or a file on the server; a loopback HTTP stream is then segmented, shown and downloadable."""
    import time

    import gradio as gr

    from agent.serve.app import App, build_app
    from support.live_stream import encode_ts, http_stream

    def api_names(app) -> set[str]:
        return {fn.api_name for fn in build_app(app, 1).fns.values()}

    closed = App(lite_assistant, Limits(), {}, 600, workspaces=tmp_path)
    assert "live_open" not in api_names(closed) and "live_ask" in api_names(closed)
    with pytest.raises(UserError, match="--allow-streams"):
        closed.live_tab.open_stream(None, "http://127.0.0.1:9/swan.ts", "a black swan", None)
    app = App(lite_assistant, Limits(), {}, 600, workspaces=tmp_path, allow_streams=True)
    assert "live_open" in api_names(app)
    for url in ("/etc/passwd", "file:///etc/passwd", "swan.ts", "concat:/etc/passwd|/etc/hosts", "  "):
        with pytest.raises(UserError, match="network stream URL"):
            app.live_tab.open_stream(None, url, "a black swan", None)
    assert not app.live  # nothing refused made a workspace

    frames = sorted((refdavis / "JPEGImages" / "blackswan").glob("*.jpg"))[:10]
    clip = encode_ts(frames, tmp_path / "swan.ts", 10)
    with http_stream(clip) as url:
        ws, status, _ = app.live_tab.open_stream(None, url, "a black swan", gr.Request(session_hash="a browser"))
        deadline = time.monotonic() + 120
        while ws.live.counts["handled"] < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        image, counts = app.live_tab.tick(ws)
        assert image.size == (854, 480) and counts.endswith("1 object(s) in view")
        _, status, download, _ = app.live_tab.stop(ws)
    assert status.startswith("Stopped") and "1 object(s)" in status
    with zipfile.ZipFile(download.value["path"]) as archive:  # the button as gradio sends it: its file
        result = json.loads(archive.read("result.json"))
    assert result["input"] == url and result["frames_handled"] >= 3
    app.close_all()
    assert not ws.folder.exists()
