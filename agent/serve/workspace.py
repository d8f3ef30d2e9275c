"""One browser session's side of `rvos serve`: its video, conversation and results, in a temporary
folder of its own. Everything here goes through the session API; the page only shows it."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from agent.assistant.reply import Reply
from agent.assistant.session import Assistant, Session
from agent.errors import UserError
from agent.grounder.visual import NEGATIVE, POSITIVE
from agent.video.source import VIDEO_SUFFIXES, VideoSource

# (frames done, frames in all, what): the page's progress bar
Report = Callable[[int, int, str], None]


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


@dataclass
class Rendered:
    """What the page shows after a change: the overlay video and the zip of the results."""

    overlay: Path | None
    archive: Path | None


class Workspace:
    """The video, the session, the chat and the written results of one browser session."""

    def __init__(self, assistant: Assistant, limits: Limits, model_lock: threading.Lock, root: Path | None = None):
        self.assistant, self.limits, self.model_lock = assistant, limits, model_lock
        self.folder = Path(tempfile.mkdtemp(prefix="rvos-serve-", dir=root))
        self.session: Session | None = None
        self.messages: list[dict[str, Any]] = []  # the chat as the page shows it
        self.cancel = threading.Event()
        self.rendered = Rendered(None, None)
        self._version = 0

    # --- opening a video ---------------------------------------------------------------------
    def open_upload(self, upload: str | Path) -> Session:
        """A file the page uploaded (its temporary path, never a path a person typed)."""
        upload = Path(upload)
        suffix = upload.suffix.lower()
        if suffix not in VIDEO_SUFFIXES:
            raise UserError(f"{upload.name} is not a video this app reads; upload one of {', '.join(VIDEO_SUFFIXES)}")
        size_mb = upload.stat().st_size / 2**20
        if size_mb > self.limits.max_upload_mb:
            raise UserError(f"the file is {size_mb:.0f} MB; this server takes at most {self.limits.max_upload_mb:g} MB")
        video_dir = self._fresh("video")
        target = video_dir / f"upload{suffix}"  # our name: nothing from the request names a path
        shutil.copyfile(upload, target)
        return self._open(target)

    def open_example(self, name: str, examples: Mapping[str, Path]) -> Session:
        if name not in examples:
            raise UserError(f"there is no example called {name!r}; pick one from the list")
        return self._open(examples[name])

    def _open(self, path: Path) -> Session:
        video = VideoSource.open(path)
        self.limits.check_video(video)
        self.session = self.assistant.open(video, progress=False)
        self.messages = []
        self.rendered = Rendered(None, None)
        return self.session

    # --- the work ----------------------------------------------------------------------------
    @property
    def opened(self) -> Session:
        if self.session is None:
            raise UserError("upload a video or pick an example first")
        return self.session

    def run(self, work: Callable[[Session], Reply], report: Report | None = None) -> Reply:
        """Run one job on the session: one model job at a time for the whole server, progress reported,
        stop honoured between frames (a stopped job leaves the session as it was)."""
        session = self.opened
        self.cancel.clear()

        def progress(done: int, total: int, what: str) -> None:
            if self.cancel.is_set():
                raise Cancelled("stopped; nothing changed")
            if report:
                report(done, total, what)

        if report:
            report(0, 0, "waiting for the model")
        with self.model_lock:
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
        self.messages.append({"role": "user", "content": question})
        self.messages.append({"role": "assistant", "content": reply.answer})
        trace = "\n".join(f"- **{step.kind}**: {step.text}" for step in reply.trace)
        self.messages.append({"role": "assistant", "content": trace, "metadata": {"title": f"How ({reply.mode})", "status": "done"}})
        return reply

    def click(self, frame: int, x: float, y: float, positive: bool, object_id: int | None, report: Report | None = None) -> Reply:
        label = POSITIVE if positive else NEGATIVE
        reply = self.run(lambda s: s.add_points(frame, [(x, y)], [label], object_id), report)
        self.messages.append({"role": "assistant", "content": reply.answer})
        return reply

    def rename(self, object_id: int, name: str) -> Reply:
        return self.opened.rename(object_id, name)

    def remove(self, object_id: int) -> Reply:
        reply = self.opened.remove(object_id)
        self.messages.append({"role": "assistant", "content": reply.answer})
        return reply

    # --- what the page shows -------------------------------------------------------------------
    def render(self, meta: Mapping[str, Any] | None = None) -> Rendered:
        """Write the objects as they stand: masks/, result.json, overlay.mp4 (as `rvos segment` does),
        and their zip. Each render gets new names, so a browser never shows a stale cached copy."""
        session = self.opened
        asked = [reply for reply in session.replies if reply.mode != "prompt"]
        last = asked[-1] if asked else None  # the overlay's caption is the last question asked
        state = session.state(last.question if last else "", last.answer if last else "", last.trace if last else ())
        folder = self._fresh("result")
        written = state.save(folder / "rvos-result", overwrite=True, meta=dict(meta or {}))
        archive = shutil.make_archive(str(folder / "rvos-result"), "zip", written)
        self.rendered = Rendered(written / "overlay.mp4", Path(archive))
        return self.rendered

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

    def _fresh(self, kind: str) -> Path:
        """A new folder for this kind of output; the previous one is removed."""
        for old in self.folder.glob(f"{kind}-*"):
            shutil.rmtree(old, ignore_errors=True)
        self._version += 1
        folder = self.folder / f"{kind}-{self._version}"
        folder.mkdir()
        return folder

    def close(self) -> None:
        """The browser session ended (or sat idle too long): its files go."""
        self.cancel.set()
        shutil.rmtree(self.folder, ignore_errors=True)
