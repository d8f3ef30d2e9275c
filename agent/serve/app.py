"""The page of `rvos serve`: gradio components over one `Workspace` per browser session.

Every handler does one thing through the workspace (which goes through the session API) and returns
what the page shows; a person's mistake is a message in the page, never a dead server, and the page
never shows a traceback or a path on the server (the log has those)."""

from __future__ import annotations

import functools
import html
import logging
import re
import secrets
import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gradio as gr

from agent import __version__
from agent.assistant.session import Assistant
from agent.pipeline import DEFAULT_MODE, MODES
from agent.errors import UserError
from agent.serve.live_tab import LiveTab, build_live_tab
from agent.serve.workspace import Limits, Workspace
from agent.tracker.feature_cache import DEFAULT_FEATURE_CACHE_MB
from agent.writers.palette import davis_palette

log = logging.getLogger("rvos.serve")
NEW_OBJECT = "new"
PALETTE = davis_palette()
INTRO = """# rvos — talk to a video
Upload a clip (mp4, webm, mov, avi, mkv) or pick an example, then ask for an object in plain words.
Click on the frame to fix a mask: **on the object** adds to it, **not on it** takes away; pick *new object*
to start another one. Download gives `masks/`, `result.json` and `overlay.mp4`, as `rvos segment` writes them."""
READY = "Upload a video or pick an example."
# An absolute path of two or more parts (a server folder): shown as its last part only.
SERVER_PATH = re.compile(r"(?<![\w/.~-])/(?:[^\s'\"():,;/]+/)+([^\s'\"():,;/]*)")


class Busy(UserError):
    """Every session the server takes is open: a new one is turned away (the open ones go on)."""


class App:
    """The page's handlers, bound to one loaded assistant shared by every browser session."""

    def __init__(self, assistant: Assistant, limits: Limits, examples: Mapping[str, Path], idle_seconds: float,
                 max_sessions: int = 8, workspaces: Path | None = None, feature_cache_mb: float = DEFAULT_FEATURE_CACHE_MB,
                 allow_streams: bool = False):
        self.assistant, self.limits, self.examples, self.idle_seconds = assistant, limits, dict(examples), idle_seconds
        self.max_sessions, self.workspaces = max_sessions, workspaces  # workspaces: where their folders go
        self.feature_cache_mb = feature_cache_mb  # each session's cache of its frames' image features
        self.live_tab = LiveTab(self, allow_streams)  # the live tab's handlers (stream URLs only when allowed)
        # A thread-safe backend (its state lives in each call) runs --concurrency jobs at once on the one
        # loaded model; any other runs one job at a time behind this lock (the others wait in line).
        self.model_lock: contextlib.AbstractContextManager = (
            contextlib.nullcontext() if getattr(assistant.backend, "thread_safe", False) else threading.Lock())
        self.live: dict[str, Workspace] = {}  # browser session → its workspace
        self._live_lock = threading.Lock()  # handlers run in threads: admitting a session is one step
        backend = assistant.backend
        self.meta = {"rvos_agent": __version__, "backend": backend.name, "model": backend.model, "device": backend.device}

    def workspace(self, current: Workspace | None, request: gr.Request | None) -> Workspace:
        """This browser session's workspace: from its state, else the one made by an earlier call whose
        state never came back (it failed), else a new one if the server takes another session."""
        key = request.session_hash if request is not None else None
        with self._live_lock:
            ws = current if current is not None and not current.closed else self.live.get(key) if key else None
            if ws is None:
                self._admit()
                ws = Workspace(self.assistant, self.limits, self.model_lock, self.workspaces, self.feature_cache_mb)
            if key:
                self.live[key] = ws  # so that closing the tab can remove its files at once, and to count it
        ws.last_used = time.monotonic()  # in use: not idle, whatever this job takes
        return ws

    def _admit(self) -> None:
        """Room for one more session: sessions idle too long (whose tab never said goodbye) go first."""
        if len(self.live) < self.max_sessions:
            return
        now = time.monotonic()
        for key, ws in list(self.live.items()):
            if now - ws.last_used > self.idle_seconds:
                self.live.pop(key).close()
        if len(self.live) >= self.max_sessions:
            raise Busy(busy_message(len(self.live)))

    def greet(self, request: gr.Request) -> str:
        """The status line when the page opens: whether this server takes one more session now."""
        with self._live_lock:
            full = request.session_hash not in self.live and len(self.live) >= self.max_sessions
            return f"⚠️ {busy_message(len(self.live))}" if full else READY

    def closed(self, request: gr.Request) -> None:
        """The tab was closed or reloaded: its workspace goes now (gradio would keep its state an hour)."""
        with self._live_lock:
            ws = self.live.pop(request.session_hash, None)
        if ws is not None:
            ws.close()

    def expired(self, ws: Workspace | None) -> None:
        """gradio dropped the state (idle too long, or closed an hour ago)."""
        if ws is not None:
            ws.close()
            with self._live_lock:
                for key in [k for k, v in self.live.items() if v is ws]:
                    self.live.pop(key, None)

    def close_all(self) -> None:
        """The server stops: every workspace's files go."""
        with self._live_lock:
            workspaces, self.live = list(self.live.values()), {}
        for ws in workspaces:
            ws.close()

    # --- what every change shows -------------------------------------------------------------
    def view(self, ws: Workspace, status: str, frame: int = 0, target: str = NEW_OBJECT) -> tuple:
        session = ws.session
        frames = len(session.video) if session else 1
        frame = max(0, min(int(frame), frames - 1))
        objects = session.objects.objects if session else {}
        choices = [("new object", NEW_OBJECT)] + [(f"#{i} {o.description}", str(i)) for i, o in sorted(objects.items())]
        if target not in {value for _, value in choices}:
            target = NEW_OBJECT
        overlay = ws.overlay
        if overlay is not None and not overlay.exists():  # gradio's cache sweep removed it: write it again
            overlay = ws.render()
        return (
            ws,
            status,
            ws.messages,
            str(overlay) if overlay else None,
            str(ws.frame_file(frame)) if session else None,
            gr.Slider(minimum=0, maximum=max(frames - 1, 1), value=frame, step=1, interactive=session is not None),
            objects_html(objects),
            gr.Dropdown(choices=choices, value=target),
            gr.Button(interactive=bool(objects)),
        )

    def opened_status(self, ws: Workspace, name: str) -> str:
        video = ws.opened.video
        width, height = video.size
        return f"Opened **{html.escape(name)}**: {len(video)} frames, {width}×{height}. Ask for an object below."

    # --- handlers -----------------------------------------------------------------------------
    def open_video(self, ws, upload, request: gr.Request, progress=gr.Progress()):
        ws = self.workspace(ws, request)
        if upload is None:
            raise UserError("choose a video file to upload")
        ws.open_upload(upload)
        return self.view(ws, self.opened_status(ws, Path(upload).name)) + (None,)  # the drop zone is ready for the next

    def open_example(self, ws, name, request: gr.Request, progress=gr.Progress()):
        ws = self.workspace(ws, request)
        if not name:
            return self.view(ws, "Pick an example or upload a video.")
        ws.open_example(name, self.examples)
        return self.view(ws, self.opened_status(ws, name))

    def ask(self, ws, question, mode, frame, request: gr.Request, progress=gr.Progress()):
        ws = self.workspace(ws, request)
        reply = ws.ask(question, mode, _reporter(progress))
        ws.render()
        shown = max(reply.objects, default=None)
        status = reply.answer if reply.mode == "describe" else f"{len(reply.objects)} object(s) found."
        return self.view(ws, status, frame, str(shown) if shown else NEW_OBJECT) + ("",)

    def describe(self, ws, target, question, frame, request: gr.Request, progress=gr.Progress()):
        """The chosen object described, or the question in the box answered about it."""
        ws = self.workspace(ws, request)
        reply = ws.describe(_chosen(target), question, _reporter(progress))
        return self.view(ws, reply.answer, frame, target) + ("",)

    def caption(self, ws, frame, request: gr.Request, progress=gr.Progress()):
        ws = self.workspace(ws, request)
        if ws.session is None:
            raise UserError("open a video first")
        reply = ws.caption(_reporter(progress))
        ws.render()
        return self.view(ws, f"{len(reply.objects)} object(s) in the caption.", frame)

    def click(self, ws, frame, kind, target, event: gr.SelectData, request: gr.Request, progress=gr.Progress()):
        ws = self.workspace(ws, request)
        x, y = event.index
        object_id = None if target in (None, NEW_OBJECT) else int(target)
        reply = ws.click(int(frame), float(x), float(y), kind == "on the object", object_id, _reporter(progress))
        ws.render()
        changed = reply.trace[-1].detail.get("object")
        return self.view(ws, reply.answer, frame, str(changed))

    def rename(self, ws, target, name, frame, request: gr.Request):
        ws = self.workspace(ws, request)
        reply = ws.rename(_chosen(target), name)  # the overlay shows no names: nothing to draw again
        return self.view(ws, reply.answer, frame, target)

    def remove(self, ws, target, frame, request: gr.Request):
        ws = self.workspace(ws, request)
        reply = ws.remove(_chosen(target))
        ws.render()
        return self.view(ws, reply.answer, frame)

    def download(self, ws, request: gr.Request):
        """Build the results when asked for (the page then hands the file to the browser)."""
        if ws is None or ws.closed:
            raise UserError("there is nothing to download yet: upload a video and ask for an object first")
        return ws, gr.skip(), str(ws.download(self.meta))

    def show_frame(self, ws, frame):
        try:
            return str(ws.frame_file(frame)) if ws is not None and ws.session is not None and not ws.closed else None
        except Exception:  # noqa: BLE001 - a frame that cannot be shown leaves the viewer as it was
            log.exception("showing frame %s failed", frame)
            return gr.skip()

    def stop(self, ws):
        if ws is not None:
            ws.cancel.set()
        return "Stopping…"


def _chosen(target: str | None) -> int:
    if target in (None, NEW_OBJECT):
        raise UserError("choose one of the objects in the list first")
    return int(target)


def _reporter(progress: gr.Progress) -> Callable[[int, int, str], None]:
    def report(done: int, total: int, what: str) -> None:
        progress((done, total) if total else None, desc=what, unit="frames")
    return report


def objects_html(objects: Mapping[int, Any]) -> str:
    if not objects:
        return '<p class="rvos-none">No objects yet.</p>'
    rows = []
    for object_id, obj in sorted(objects.items()):
        red, green, blue = (int(c) for c in PALETTE[object_id % 256])
        rows.append(f'<li data-object-id="{object_id}"><span class="rvos-swatch" style="background: rgb({red}, {green}, {blue})"></span>'
                    f"#{object_id} {html.escape(obj.description)}</li>")
    return f'<ul class="rvos-objects">{"".join(rows)}</ul>'


def busy_message(open_sessions: int) -> str:
    return f"The server is busy: {open_sessions} sessions are open; try again in a few minutes."


def public_message(text: str) -> str:
    """What the page may show of a message: server folders reduced to the file's own name."""
    return SERVER_PATH.sub(lambda match: match.group(1) or "…", text)


def _guarded(handler: Callable, outputs: int, cleared: tuple[int, ...] = ()) -> Callable:
    """A person's mistake (or a stop) becomes the status line and a notice; everything else on the page
    stays as it was (but the outputs `cleared`). A fault of ours is logged with its traceback and a
    reference; the page shows the reference only (no traceback, no server path)."""

    @functools.wraps(handler)
    def run(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except UserError as exc:
            message = public_message(str(exc))
        except Exception:  # noqa: BLE001 - the server must keep serving everyone else
            reference = secrets.token_hex(4)
            log.exception("request failed (reference %s)", reference)
            message = f"something went wrong on the server (reference {reference}; its log has the details); try again"
        gr.Warning(message)
        return tuple(None if i in cleared else f"⚠️ {html.escape(message)}" if i == 1 else gr.skip() for i in range(outputs))

    return run


CSS = """
.rvos-objects { list-style: none; padding-left: 0; }
.rvos-objects li { margin: 2px 0; }
.rvos-swatch { display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.4em; border-radius: 2px; vertical-align: middle; }
"""


def build_app(app: App, concurrency: int) -> gr.Blocks:
    with gr.Blocks(title="rvos", delete_cache=(600, int(app.idle_seconds))) as page:
        state = gr.State(None, time_to_live=app.idle_seconds, delete_callback=app.expired)
        gr.Markdown(INTRO)
        with gr.Tab("Video", elem_id="video-tab"):
            view = _video_tab(app, state, concurrency)
        with gr.Tab("Live", elem_id="live-tab"):
            build_live_tab(app.live_tab, state)
        page.load(app.greet, None, view[1], api_visibility="private", concurrency_limit=None, show_progress="hidden")
        page.unload(app.closed)
    return page


def _video_tab(app: App, state, concurrency: int) -> list:
    """A video opened and talked about: the page's first tab. Returns the components every change shows."""
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="Video", file_types=[".mp4", ".webm", ".mov", ".avi", ".mkv"], elem_id="upload")
            example = gr.Dropdown(choices=sorted(app.examples), value=None, label="…or an example", elem_id="example",
                                  visible=bool(app.examples))
            status = gr.Markdown(READY, elem_id="status")
            chat = gr.Chatbot(label="Conversation", elem_id="chat", height=360)
            question = gr.Textbox(label="Ask", placeholder="the dog that catches the frisbee", elem_id="question", lines=1)
            with gr.Row():
                modes = [m for m in MODES if m != "planner" or app.assistant.planner is not None]  # planner: with --planner only
                mode = gr.Radio(modes, value=DEFAULT_MODE, label="Mode", elem_id="mode")  # every door's default
                ask_button = gr.Button("Ask", variant="primary", elem_id="ask")
                stop_button = gr.Button("Stop", variant="stop", elem_id="stop")
        with gr.Column(scale=1):
            overlay = gr.Video(label="Result", elem_id="overlay", interactive=False, loop=True, autoplay=True)
            frame_image = gr.Image(label="Frame: click to correct", elem_id="frame", interactive=False, type="pil")
            slider = gr.Slider(0, 1, value=0, step=1, label="Frame", elem_id="frame-slider", interactive=False)
            with gr.Row():
                kind = gr.Radio(["on the object", "not on it"], value="on the object", label="A click is", elem_id="click-kind")
                target = gr.Dropdown(choices=[("new object", NEW_OBJECT)], value=NEW_OBJECT, label="for", elem_id="target")
            objects = gr.HTML(objects_html({}), elem_id="objects")
            with gr.Row():
                name = gr.Textbox(label="Name", placeholder="a new name for the chosen object", elem_id="name", scale=3)
                rename_button = gr.Button("Rename", elem_id="rename", scale=1)
                remove_button = gr.Button("Remove", elem_id="remove", scale=1)
            with gr.Row():
                describe_button = gr.Button("Describe it (or ask the question about it)", elem_id="describe", scale=2)
                caption_button = gr.Button("Caption the video", elem_id="caption", scale=1)
            download = gr.Button("Download results (zip)", elem_id="download", interactive=False)
            download_file = gr.DownloadButton("Save", elem_id="download-file", visible="hidden")  # what the browser saves

    view = [state, status, chat, overlay, frame_image, slider, objects, target, download]
    work = {"concurrency_id": "work", "concurrency_limit": concurrency}
    quick = {"concurrency_limit": None, "show_progress": "hidden"}
    upload.upload(_guarded(app.open_video, len(view) + 1, cleared=(len(view),)), [state, upload], [*view, upload], api_name="open_video", **work)
    example.select(_guarded(app.open_example, len(view)), [state, example], view, api_name="open_example", **work)
    asked = [state, question, mode, slider]
    ask_outputs = [*view, question]
    ask_button.click(_guarded(app.ask, len(ask_outputs)), asked, ask_outputs, api_name="ask", **work)
    question.submit(_guarded(app.ask, len(ask_outputs)), asked, ask_outputs, api_visibility="private", **work)
    frame_image.select(_guarded(app.click, len(view)), [state, slider, kind, target], view, api_visibility="private", **work)
    rename_button.click(_guarded(app.rename, len(view)), [state, target, name, slider], view, api_name="rename", **work)
    remove_button.click(_guarded(app.remove, len(view)), [state, target, slider], view, api_name="remove", **work)
    describe_button.click(_guarded(app.describe, len(ask_outputs)), [state, target, question, slider], ask_outputs, api_name="describe", **work)
    caption_button.click(_guarded(app.caption, len(view)), [state, slider], view, api_name="caption", **work)
    slider.change(app.show_frame, [state, slider], frame_image, api_visibility="private", trigger_mode="always_last", **quick)
    stop_button.click(app.stop, [state], status, api_name="stop", **quick)
    # Built when asked for, then handed to the browser as the hidden button's file (as if it were clicked).
    download.click(_guarded(app.download, 3, cleared=(2,)), [state], [state, status, download_file], api_name="download", **work).success(
        None, None, None, js="() => document.getElementById('download-file')?.click()")
    return view
