"""The page's live tab: the browser's camera (gradio's streaming webcam input), or a stream URL when the server
allows it (`rvos serve --allow-streams`), segmented as frames arrive by one `LiveSession` per browser session.

The camera's frames are pushed into a `LiveSource.pushed()`; a URL is opened by the server itself, so it is
taken only with `--allow-streams` (off by default: a page must not make the server fetch what it likes) and only
as a network stream (rtsp, rtmp, http(s), udp, srt…: never a path or a file:// URL on the server). A timer shows
the newest handled frame with its masks and the counts; a question or a click acts from the next frame on. The
results (frames.jsonl, masks/, result.json once stopped) are in the workspace and come with the download."""

from __future__ import annotations

import html
import threading
import time
from typing import Any

import gradio as gr
import numpy as np

from agent.assistant.live import LiveSession
from agent.errors import UserError
from agent.live import LiveSettings
from agent.video.live import STREAM_URL, LiveSource
from agent.writers.overlay import draw_overlay
from agent.writers.palette import label_map

LIVE_INTRO = """### Live
Start the camera (or open a stream URL, where this server allows it), say what to look for, and watch the masks as
frames come back. A question or a click on the picture adds an object from the next frame on. Stop ends the run;
Download then gives its `frames.jsonl`, `masks/` and `result.json`."""
LIVE_IDLE = "Not running. Start the camera or open a stream."
TICK_SECONDS = 0.5  # how often the page asks for the newest result
CAMERA_EVERY_SECONDS = 0.2  # how often the browser sends a camera frame (the run keeps the newest it can handle)
STOPPED_GRACE_SECONDS = 3.0  # camera frames this soon after Stop were on their way: they start no new run
# Stop also stops the browser's camera (its own Stop button), so that no frame starts another run
STOP_CAMERA_JS = """(...args) => { const b = [...document.querySelectorAll('#live-camera button')].find(b => b.innerText.trim() === 'Stop');
  if (b) b.click(); return args; }"""


class LiveTab:
    """The live tab's handlers; one live session per workspace (started by the first frame or a stream URL)."""

    def __init__(self, app: Any, allow_streams: bool = False):
        self.app, self.allow_streams = app, allow_streams
        self._starting = threading.Lock()

    def _start(self, ws, source: LiveSource, question: str | None) -> LiveSession:
        question = self.app.limits.check_instruction(question) if question and question.strip() else None
        settings = LiveSettings(max_frames=self.app.limits.max_frames)  # a run ends where an uploaded video would
        return ws.start_live(source, question, settings)

    def camera_frame(self, ws, image, question, request: gr.Request):
        """One frame from the browser's camera: into this session's live run (started by the first one)."""
        if image is None:
            return ws, gr.skip()
        ws = self.app.workspace(ws, request)
        width, height = image.size
        if max(width, height) > self.app.limits.max_side:
            raise UserError(f"the camera sends {width}×{height}; this server takes at most {self.app.limits.max_side} pixels a side")
        with self._starting:  # frames come in threads of their own: one run per session
            live = ws.live
            if live is None and ws.live_stopped is not None and time.monotonic() - ws.live_stopped < STOPPED_GRACE_SECONDS:
                return ws, gr.skip()  # sent before the camera stopped with the run: it starts nothing
            if live is None or not live.running or live.source.kind != "pushed":
                live = self._start(ws, LiveSource.pushed("the browser's camera"), question)
        live.source.push(image)
        return ws, gr.Timer(active=True)

    def open_stream(self, ws, url, question, request: gr.Request):
        """A stream URL the server opens: only with --allow-streams, only a network stream."""
        if not self.allow_streams:
            raise UserError("this server does not open stream URLs (start it with --allow-streams); use the camera")
        url = (url or "").strip()
        if not STREAM_URL.match(url):
            raise UserError("give a network stream URL (rtsp://, rtmp://, http(s)://, udp://, srt://…); "
                            "the server opens no files")
        ws = self.app.workspace(ws, request)
        with self._starting:
            self._start(ws, LiveSource.open(url, reconnect=5.0), question)
        return ws, f"Opening {html.escape(url)}…", gr.Timer(active=True)

    def ask(self, ws, question, request: gr.Request):
        ws = self.app.workspace(ws, request)
        live = running(ws)
        question = self.app.limits.check_instruction(question)
        reply = live.ask(question, timeout=600)
        return ws, f"{html.escape(reply.answer)} ({len(reply.objects)} object(s) from frame {live.latest[0].index if live.latest else 0} on)"

    def click(self, ws, event: gr.SelectData, request: gr.Request):
        ws = self.app.workspace(ws, request)
        x, y = event.index
        reply = running(ws).click(float(x), float(y), timeout=600)
        return ws, html.escape(reply.answer)

    def stop(self, ws):
        if ws is None or ws.live is None:
            return ws, LIVE_IDLE, gr.DownloadButton(visible=False), gr.Timer(active=False)
        run = ws.stop_live()
        if run is None:
            return ws, "Stopped before any frame came.", gr.DownloadButton(visible=False), gr.Timer(active=False)
        archive = ws.live_download(run.out)
        return ws, (f"Stopped ({html.escape(run.ended)}): {run.handled} frames handled, {run.dropped} dropped, "
                    f"{len(run.objects)} object(s)."), gr.DownloadButton(value=str(archive), visible=True), gr.Timer(active=False)

    def tick(self, ws):
        """The newest handled frame with its masks, and the counts (skipped when nothing is new)."""
        live = ws.live if ws is not None and not ws.closed else None
        latest = live.latest if live is not None else None
        if latest is None or ws.live_shown == latest[0].index:
            return gr.skip(), gr.skip()
        ws.live_shown = latest[0].index
        frame, masks = latest
        width, height = frame.image.size
        image = draw_overlay(frame.image, label_map(masks, (height, width)))
        counts = live.counts
        found = sum(1 for m in masks.values() if np.any(m))
        status = (f"Live: frame {frame.index}, {counts['handled']} handled, {counts['dropped']} dropped, "
                  f"latency {counts['latency_p50_ms'] or 0:.0f} ms, {found} object(s) in view")
        return image, status


def running(ws) -> LiveSession:
    live = ws.live if ws is not None else None
    if live is None or not live.running:
        raise UserError("start the camera or open a stream first")
    return live


def build_live_tab(tab: LiveTab, state) -> None:
    """The tab's components and events (inside the page's Blocks)."""
    gr.Markdown(LIVE_INTRO)
    with gr.Row():
        with gr.Column(scale=1):
            # not mirrored: the frames the model sees, and the result shown, are the camera's own view
            camera = gr.Image(sources=["webcam"], streaming=True, type="pil", label="Camera", elem_id="live-camera",
                              webcam_options=gr.WebcamOptions(mirror=False))
            url = gr.Textbox(label="…or a stream URL", placeholder="rtsp://camera/1", elem_id="live-url", visible=tab.allow_streams)
            open_button = gr.Button("Open stream", elem_id="live-open", visible=tab.allow_streams)
            question = gr.Textbox(label="Look for", placeholder="the person on the left", elem_id="live-question", lines=1)
            with gr.Row():
                ask_button = gr.Button("Ask", variant="primary", elem_id="live-ask")
                stop_button = gr.Button("Stop", variant="stop", elem_id="live-stop")
            status = gr.Markdown(LIVE_IDLE, elem_id="live-status")  # what the last action said
            counts = gr.Markdown("", elem_id="live-counts")  # the run as it goes, from the timer
            download = gr.DownloadButton("Download the live results (zip)", elem_id="live-download", visible=False)
        with gr.Column(scale=1):
            view = gr.Image(label="Live result: click to add an object", elem_id="live-view", interactive=False, type="pil")
    from agent.serve.app import _guarded  # the page's one way of turning a mistake into a message

    quick = {"concurrency_limit": None, "show_progress": "hidden"}
    # the timer that shows the newest result runs only while a run does: an idle page sends nothing
    timer = gr.Timer(TICK_SECONDS, active=False)
    camera.stream(_guarded(tab.camera_frame, 2), [state, camera, question], [state, timer], stream_every=CAMERA_EVERY_SECONDS,
                  api_visibility="private", **quick)
    if tab.allow_streams:
        open_button.click(_guarded(tab.open_stream, 3), [state, url, question], [state, status, timer], api_name="live_open", **quick)
    ask_button.click(_guarded(tab.ask, 2), [state, question], [state, status], api_name="live_ask", concurrency_limit=None)
    question.submit(_guarded(tab.ask, 2), [state, question], [state, status], api_visibility="private", concurrency_limit=None)
    view.select(_guarded(tab.click, 2), [state], [state, status], api_visibility="private", concurrency_limit=None)
    stop_button.click(_guarded(tab.stop, 4), [state], [state, status, download, timer], api_name="live_stop", concurrency_limit=None,
                      js=STOP_CAMERA_JS)
    timer.tick(tab.tick, [state], [view, counts], api_visibility="private", **quick)
