"""The page of `rvos serve`: gradio components over one `Workspace` per browser session.

Every handler does one thing through the workspace (which goes through the session API) and returns
what the page shows; a person's mistake is a message in the page, never a dead server."""

from __future__ import annotations

import functools
import html
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gradio as gr

from agent import __version__
from agent.assistant.session import MODES, Assistant
from agent.errors import UserError
from agent.serve.workspace import Limits, Workspace
from agent.writers.palette import davis_palette

log = logging.getLogger("rvos.serve")
NEW_OBJECT = "new"
PALETTE = davis_palette()
INTRO = """# rvos — talk to a video
Upload a clip (mp4, webm, mov, avi, mkv) or pick an example, then ask for an object in plain words.
Click on the frame to fix a mask: **on the object** adds to it, **not on it** takes away; pick *new object*
to start another one. Download gives `masks/`, `result.json` and `overlay.mp4`, as `rvos segment` writes them."""


class App:
    """The page's handlers, bound to one loaded assistant shared by every browser session."""

    def __init__(self, assistant: Assistant, limits: Limits, examples: Mapping[str, Path], idle_seconds: float):
        self.assistant, self.limits, self.examples, self.idle_seconds = assistant, limits, dict(examples), idle_seconds
        self.model_lock = threading.Lock()  # one model: one job on it at a time (the others wait in line)
        self.live: dict[str, Workspace] = {}  # browser session → its workspace
        backend = assistant.backend
        self.meta = {"rvos_agent": __version__, "backend": backend.name, "model": backend.model, "device": backend.device}

    def workspace(self, current: Workspace | None, request: gr.Request | None) -> Workspace:
        """This browser session's workspace: from its state, else the one made by an earlier call whose
        state never came back (it failed), else a new one."""
        key = request.session_hash if request is not None else None
        ws = current or (self.live.get(key) if key else None) or Workspace(self.assistant, self.limits, self.model_lock)
        if key:
            self.live[key] = ws  # so that closing the tab can remove its files at once
        return ws

    def closed(self, request: gr.Request) -> None:
        """The tab was closed or reloaded: its workspace goes now (gradio would keep its state an hour)."""
        ws = self.live.pop(request.session_hash, None)
        if ws is not None:
            ws.close()

    def expired(self, ws: Workspace | None) -> None:
        """gradio dropped the state (idle too long, or closed an hour ago)."""
        if ws is not None:
            ws.close()
            for key in [k for k, v in self.live.items() if v is ws]:
                self.live.pop(key, None)

    # --- what every change shows -------------------------------------------------------------
    def view(self, ws: Workspace, status: str, frame: int = 0, target: str = NEW_OBJECT) -> tuple:
        session = ws.session
        frames = len(session.video) if session else 1
        frame = max(0, min(int(frame), frames - 1))
        objects = session.objects.objects if session else {}
        choices = [("new object", NEW_OBJECT)] + [(f"#{i} {o.description}", str(i)) for i, o in sorted(objects.items())]
        if target not in {value for _, value in choices}:
            target = NEW_OBJECT
        return (
            ws,
            status,
            ws.messages,
            str(ws.rendered.overlay) if ws.rendered.overlay else None,
            ws.frame_image(frame) if session else None,
            gr.Slider(minimum=0, maximum=max(frames - 1, 1), value=frame, step=1, interactive=session is not None),
            objects_html(objects),
            gr.Dropdown(choices=choices, value=target),
            gr.DownloadButton(value=str(ws.rendered.archive) if ws.rendered.archive else None, interactive=ws.rendered.archive is not None),
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
        ws.render(self.meta)
        shown = max(reply.objects, default=None)
        return self.view(ws, f"{len(reply.objects)} object(s) found.", frame, str(shown) if shown else NEW_OBJECT) + ("",)

    def click(self, ws, frame, kind, target, event: gr.SelectData, request: gr.Request, progress=gr.Progress()):
        ws = self.workspace(ws, request)
        x, y = event.index
        object_id = None if target in (None, NEW_OBJECT) else int(target)
        reply = ws.click(int(frame), float(x), float(y), kind == "on the object", object_id, _reporter(progress))
        ws.render(self.meta)
        changed = reply.trace[-1].detail.get("object")
        return self.view(ws, reply.answer, frame, str(changed))

    def rename(self, ws, target, name, frame, request: gr.Request):
        ws = self.workspace(ws, request)
        reply = ws.rename(_chosen(target), name)
        ws.render(self.meta)
        return self.view(ws, reply.answer, frame, target)

    def remove(self, ws, target, frame, request: gr.Request):
        ws = self.workspace(ws, request)
        reply = ws.remove(_chosen(target))
        ws.render(self.meta)
        return self.view(ws, reply.answer, frame)

    def show_frame(self, ws, frame):
        return ws.frame_image(frame) if ws is not None and ws.session is not None else None

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


def _guarded(handler: Callable, outputs: int, cleared: tuple[int, ...] = ()) -> Callable:
    """A person's mistake (or a stop) becomes the status line and a notice; everything else on the page
    stays as it was (but the outputs `cleared`). A fault of ours is logged with its traceback and reported in one line."""

    @functools.wraps(handler)
    def run(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except UserError as exc:
            message = str(exc)
        except Exception as exc:  # noqa: BLE001 - the server must keep serving everyone else
            log.exception("request failed")
            message = f"something went wrong on the server ({type(exc).__name__}: {exc}); nothing changed"
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
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Video", file_types=[".mp4", ".webm", ".mov", ".avi", ".mkv"], elem_id="upload")
                example = gr.Dropdown(choices=sorted(app.examples), value=None, label="…or an example", elem_id="example",
                                      visible=bool(app.examples))
                status = gr.Markdown("Upload a video or pick an example.", elem_id="status")
                chat = gr.Chatbot(label="Conversation", elem_id="chat", height=360)
                question = gr.Textbox(label="Ask", placeholder="the dog that catches the frisbee", elem_id="question", lines=1)
                with gr.Row():
                    modes = [m for m in MODES if m != "planner" or app.assistant.planner is not None]  # planner: with --planner only
                    mode = gr.Radio(modes, value="auto", label="Mode", elem_id="mode")
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
                download = gr.DownloadButton("Download results (zip)", elem_id="download", interactive=False)

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
        slider.change(app.show_frame, [state, slider], frame_image, api_visibility="private", trigger_mode="always_last", **quick)
        stop_button.click(app.stop, [state], status, api_name="stop", **quick)
        page.unload(app.closed)
    return page
