"""One browser session's side of `rvos serve`: its video, conversation and results, in a temporary
folder of its own. Everything here goes through the session API; the page only shows it.

What a session keeps is bounded: the video (under the upload limit, stored once), the overlay video the
page shows, the last few frame views, and the download only once it is asked for (until the next change)."""

from __future__ import annotations

import contextlib
import html
import itertools
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from agent.reply import Reply
from agent.assistant.session import Assistant, Session
from agent.errors import UserError
from agent.grounder.visual import NEGATIVE, POSITIVE
from agent.tracker.feature_cache import DEFAULT_FEATURE_CACHE_MB
from agent.video.source import VIDEO_SUFFIXES, VideoSource
from agent.writers.overlay import OverlayWriter
from agent.writers.palette import davis_palette, label_map

PALETTE = davis_palette()  # the overlay's colours, by object id

# (frames done, frames in all, what): the page's progress bar
Report = Callable[[int, int, str], None]
CHAT_MESSAGES_KEPT = 200  # the chat the page shows: older messages go (the model's own history is the session's)
FRAME_VIEWS_KEPT = 3  # frame images on disk: the one shown and the few a browser may still be fetching


class Cancelled(UserError):
    """The person pressed stop: the work ended and the session is as it was before it."""


@dataclass(frozen=True)
class Limits:
    max_upload_mb: float = 200.0
    max_frames: int = 3000
    max_side: int = 4096  # longest side of a frame, in pixels
    max_instruction_chars: int = 1000

    def check_video(self, video: VideoSource) -> None:
        width, height = video.size
        if len(video) > self.max_frames:
            raise UserError(f"the video has {len(video)} frames; this server takes at most {self.max_frames}: cut it shorter")
        if max(width, height) > self.max_side:
            raise UserError(f"the video is {width}×{height}; this server takes frames of at most {self.max_side} pixels a side: scale it down")

    def check_instruction(self, text: str) -> str:
        text = (text or "").strip()
        if not text:
            raise UserError('the question is empty: say which object to segment, e.g. "the dog on the left"')
        if len(text) > self.max_instruction_chars:
            raise UserError(f"the question has {len(text)} characters; at most {self.max_instruction_chars}: say it shorter")
        return text


class Workspace:
    """The video, the session, the chat and the written results of one browser session."""

    def __init__(self, assistant: Assistant, limits: Limits, model_lock: contextlib.AbstractContextManager | None = None,
                 root: Path | None = None, feature_cache_mb: float = DEFAULT_FEATURE_CACHE_MB):
        # model_lock: the server's lock for a backend that runs one job at a time; None for one that runs many at once
        self.assistant, self.limits = assistant, limits
        self.model_lock = model_lock if model_lock is not None else contextlib.nullcontext()
        self.feature_cache_mb = feature_cache_mb
        self._busy = threading.Lock()  # one job at a time on this session (its objects and conversation are one state)
        self.folder = Path(tempfile.mkdtemp(prefix="rvos-serve-", dir=root))
        self.session: Session | None = None
        self.messages: list[dict[str, Any]] = []  # the chat as the page shows it
        self.cancel = threading.Event()
        self.overlay: Path | None = None  # the overlay video the page shows
        self.last_used = time.monotonic()
        self._asked: Reply | None = None  # the last question's reply, without its masks: the overlay's caption
        self._masks_version = 0  # bumped by every change of the masks or the caption
        self._version = 0  # bumped by every change (a rename too)
        self._overlay_version = -1
        self._download: tuple[int, Path] | None = None
        self._names = itertools.count(1)  # numbered file names: next() is atomic, handlers run in threads
        self.live: Any = None  # the live tab's run (an agent.assistant.LiveSession), while it runs
        self.live_shown: int | None = None  # the live frame the page shows now
        self.live_stopped: float | None = None  # time.monotonic() when a person last stopped a live run

    @property
    def closed(self) -> bool:
        return not self.folder.exists()

    # --- opening a video ---------------------------------------------------------------------
    def open_upload(self, upload: str | Path) -> Session:
        """A file the page uploaded (its temporary path, never a path a person typed). It is linked into
        the workspace, not copied, so the upload is stored once (copied only across file systems)."""
        upload = Path(upload)
        suffix = upload.suffix.lower()
        if suffix not in VIDEO_SUFFIXES:
            raise UserError(f"{upload.name} is not a video this app reads; upload one of {', '.join(VIDEO_SUFFIXES)}")
        size_mb = upload.stat().st_size / 2**20
        if size_mb > self.limits.max_upload_mb:
            raise UserError(f"the file is {size_mb:.0f} MB; this server takes at most {self.limits.max_upload_mb:g} MB")
        video_dir = self._fresh("video")
        target = video_dir / f"upload{suffix}"  # our name: nothing from the request names a path
        try:
            os.link(upload, target)
        except OSError:  # another file system (or one without hard links)
            shutil.copyfile(upload, target)
        return self._open(target)

    def open_example(self, name: str, examples: Mapping[str, Path]) -> Session:
        if name not in examples:
            raise UserError(f"there is no example called {name!r}; pick one from the list")
        return self._open(examples[name])

    def _open(self, path: Path) -> Session:
        video = VideoSource.open(path)
        self.limits.check_video(video)
        # the session keeps the image features its tracking computed, so a click re-encodes only new frames
        self.session = self.assistant.open(video, progress=False, feature_cache_mb=self.feature_cache_mb)
        self.messages = []
        self._asked, self.overlay = None, None
        self._changed(masks=True)
        return self.session

    # --- the work ----------------------------------------------------------------------------
    @property
    def opened(self) -> Session:
        if self.session is None:
            raise UserError("upload a video or pick an example first")
        return self.session

    def run(self, work: Callable[[Session], Reply], report: Report | None = None) -> Reply:
        """Run one job on the session: one at a time on this session, and on the whole server too when its
        backend is not thread-safe (the model lock), progress reported, stop honoured between frames (a
        stopped job leaves the session as it was)."""
        session = self.opened
        self.cancel.clear()

        def progress(done: int, total: int, what: str) -> None:
            if self.cancel.is_set():
                raise Cancelled("stopped; nothing changed")
            if report:
                report(done, total, what)

        if report:
            report(0, 0, "waiting for the model")
        with self._busy, self.model_lock:
            if self.cancel.is_set():
                raise Cancelled("stopped before it started; nothing changed")
            session.progress = progress
            try:
                return work(session)
            finally:
                session.progress = False

    def ask(self, question: str, mode: str, report: Report | None = None) -> Reply:
        question = self.limits.check_instruction(question)
        reply = self.run(lambda s: s.ask(question, mode=mode), report)
        if reply.mode == "describe":  # a question about an object answered from its track: nothing changed
            self._say({"role": "user", "content": question}, {"role": "assistant", "content": reply.answer})
            self._changed(masks=False)
            return reply
        self._asked = replace(reply, _rle=[], prompts=[])  # what the caption and result.json need, not the masks
        self._say({"role": "user", "content": question}, {"role": "assistant", "content": reply.answer})
        trace = "\n".join(f"- **{step.kind}**: {step.text}" for step in reply.trace)
        self._say({"role": "assistant", "content": trace, "metadata": {"title": f"How ({reply.mode})", "status": "done"}})
        self._changed(masks=True)
        return reply

    def describe(self, object_id: int, question: str | None, report: Report | None = None) -> Reply:
        """Words about one of the session's objects (or the answer to `question` about it), from its track."""
        question = self.limits.check_instruction(question) if question and question.strip() else None
        reply = self.run(lambda s: s.describe(object_id, question), report)
        self._say({"role": "user", "content": question or f"Describe object {object_id}."}, {"role": "assistant", "content": reply.answer})
        self._changed(masks=False)  # nothing was tracked: the overlay stands
        return reply

    def caption(self, report: Report | None = None) -> Reply:
        """A grounded caption of the video: each phrase's object joins the session, the phrase shown in its colour."""
        reply = self.run(lambda s: s.caption(), report)
        self._asked = replace(reply, _rle=[], prompts=[])
        self._say({"role": "user", "content": "Caption the video."}, {"role": "assistant", "content": caption_html(reply)})
        self._changed(masks=True)
        return reply

    def click(self, frame: int, x: float, y: float, positive: bool, object_id: int | None, report: Report | None = None) -> Reply:
        label = POSITIVE if positive else NEGATIVE
        reply = self.run(lambda s: s.add_points(frame, [(x, y)], [label], object_id), report)
        self._say({"role": "assistant", "content": reply.answer})
        self._changed(masks=True)
        return reply

    def rename(self, object_id: int, name: str) -> Reply:
        reply = self.opened.rename(object_id, name)
        self._changed(masks=False)  # the names are in the list and result.json, not in the overlay
        return reply

    def remove(self, object_id: int) -> Reply:
        reply = self.opened.remove(object_id)
        self._say({"role": "assistant", "content": reply.answer})
        self._changed(masks=True)
        return reply

    def _say(self, *messages: dict[str, Any]) -> None:
        self.messages = [*self.messages, *messages][-CHAT_MESSAGES_KEPT:]

    def _changed(self, masks: bool) -> None:
        """After a change: the download is stale (its files go now), and so is the overlay if the masks
        changed. The session keeps only its latest reply: the page never shows an older one."""
        self.last_used = time.monotonic()
        self._version += 1
        if masks:
            self._masks_version += 1
        if self._download is not None:
            shutil.rmtree(self._download[1].parent, ignore_errors=True)
            self._download = None
        if self.session is not None:
            del self.session.replies[:-1]

    # --- what the page shows -------------------------------------------------------------------
    def _state(self) -> Reply:
        """Every object as it stands, captioned with the last question asked (as `rvos segment` would)."""
        last = self._asked
        return self.opened.state(last.question if last else "", last.answer if last else "", last.trace if last else ())

    def render(self) -> Path | None:
        """The overlay video the page shows, written again only when the masks or the caption changed
        since it was last written (a rename changes neither). Each one gets a new name, so a browser never
        shows a stale cached copy. None when there are no objects to show."""
        session = self.opened
        if self._overlay_version == self._masks_version and (self.overlay is None or self.overlay.exists()):
            return self.overlay
        state = self._state()
        if not state.objects:
            self.overlay = None
        else:
            folder = self._fresh("overlay")
            width, height = session.video.size
            writer = OverlayWriter(folder / "overlay.mp4", session.video.size, session.video.fps, state.question)
            try:
                for index, image in session.video.frames():
                    writer.write(image, label_map(state.masks(index), (height, width)))
            finally:
                writer.close()
            self.overlay = folder / "overlay.mp4"
        self._overlay_version = self._masks_version
        return self.overlay

    def download(self, meta: Mapping[str, Any] | None = None) -> Path:
        """The zip of masks/, result.json and overlay.mp4 as `rvos segment` writes them (`Reply.save`),
        built when asked for and kept until the next change."""
        session = self.opened
        if not session.objects.objects:
            raise UserError("there is nothing to download yet: ask for an object or click on one first")
        if self._download is not None and self._download[0] == self._version and self._download[1].exists():
            return self._download[1]
        self.last_used = time.monotonic()
        folder = self._fresh("download")
        written = self._state().save(folder / "rvos-result", overwrite=True, meta=dict(meta or {}))
        archive = Path(shutil.make_archive(str(folder / "rvos-result"), "zip", written))
        shutil.rmtree(written)  # the zip is what is served: the folder would store everything twice
        self._download = (self._version, archive)
        return archive

    def frame_image(self, frame: int) -> Image.Image:
        """One frame with the masks and the clicks made on it."""
        session = self.opened
        frame = max(0, min(int(frame), len(session.video) - 1))
        image = session.state().overlay(frame)
        draw = ImageDraw.Draw(image)
        radius = max(4, image.width // 120)
        for obj in session.objects.objects.values():
            prompt = obj.prompts.get(frame)
            for (x, y), label in zip(prompt.points or [], prompt.point_labels or []) if prompt else ():
                fill = (40, 200, 70) if label == POSITIVE else (230, 40, 40)
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fill, outline=(255, 255, 255), width=2)
        return image

    def frame_file(self, frame: int) -> Path:
        """`frame_image` as a file in the workspace (served from here, not copied); only the last few are kept."""
        views = self.folder / "views"
        views.mkdir(exist_ok=True)
        path = views / f"frame-{next(self._names):06d}.jpg"
        self.frame_image(frame).save(path, quality=90)
        for old in sorted(views.glob("frame-*.jpg"))[:-FRAME_VIEWS_KEPT]:
            old.unlink(missing_ok=True)
        return path

    def _fresh(self, kind: str) -> Path:
        """A new folder for this kind of output; the previous one is removed."""
        for old in self.folder.glob(f"{kind}-*"):
            shutil.rmtree(old, ignore_errors=True)
        folder = self.folder / f"{kind}-{next(self._names)}"
        folder.mkdir()
        return folder

    # --- the live tab ------------------------------------------------------------------------------
    def start_live(self, source: Any, question: str | None, settings: Any) -> Any:
        """A live run of `source` (an agent.video.live.LiveSource) into a fresh folder here; one at a time."""
        self.stop_live()
        folder = self._fresh("stream")  # the previous run's files go; its download (a zip of its own) stays
        self.live = self.assistant.open(source, out=folder / "run", instruction=question, settings=settings,
                                        lock=self.model_lock)
        self.live_shown = None
        return self.live

    def stop_live(self) -> Any:
        """End the live run, if any (its files stay here): its summary, or None (none, or no frame ever came).
        The run is forgotten only once it has ended, so nothing starts another over its files meanwhile."""
        live = self.live
        if live is None:
            return None
        try:
            return live.stop(timeout=120)
        except UserError:  # nothing ever came: nothing was written
            return None
        finally:
            self.live, self.live_stopped = None, time.monotonic()

    def live_download(self, run_folder: Path) -> Path:
        """A finished live run's folder as a zip of its own (a later run does not remove it)."""
        self.last_used = time.monotonic()
        return Path(shutil.make_archive(str(self._fresh("live-download") / "rvos-live"), "zip", run_folder))

    def close(self) -> None:
        """The browser session ended (or sat idle too long): its live run stops, its files go."""
        self.cancel.set()
        self.stop_live()
        shutil.rmtree(self.folder, ignore_errors=True)


def caption_html(reply: Reply) -> str:
    """A grounded caption for the chat: each linked phrase in its object's overlay colour, with its number."""
    caption = reply.details.get("caption") or {}
    text, parts, cursor = caption.get("text") or reply.answer, [], 0
    for link in caption.get("phrases", []):  # in the order the caption says them
        start = text.find(link["phrase"], cursor)
        if start < 0:
            continue
        red, green, blue = (int(c) for c in PALETTE[link["object"] % 256])
        parts += [html.escape(text[cursor:start]), f'<span style="color: rgb({red}, {green}, {blue}); font-weight: bold">'
                  f'{html.escape(link["phrase"])}</span> (#{link["object"]})']
        cursor = start + len(link["phrase"])
    return "".join(parts) + html.escape(text[cursor:])
