"""Talk to a live stream: `Assistant.load(...).open("rtsp://cam/1")` (or `-`, a named pipe, `/dev/video0`, a
`LiveSource.pushed()` fed by a browser's camera, or a file with `live=True`) returns a `LiveSession`.

The stream is segmented in a thread of its own by `agent.live` (the one path: each question is a `Request` the
pipeline grounds on the current frame); `ask` and `click` act from the next frame handled on, beside the objects
already tracked, and return the grounding's reply. `latest` is the newest handled frame with its masks (what a
page draws), `stop()` ends the run and writes result.json. Results go to `out` as they come (a new temporary
folder of ours when none is given).
"""

from __future__ import annotations

import tempfile
from contextlib import AbstractContextManager
import threading
from pathlib import Path
from typing import Any

import numpy as np

from agent.backends.base import Backend
from agent.errors import UserError
from agent.grounder.protocol import ObjectPrompt
from agent.grounder.visual import NEGATIVE, POSITIVE
from agent.live import LiveRun, LiveSegmentation, LiveSettings
from agent.pipeline import DEFAULT_MODE, Request
from agent.reply import Reply
from agent.video.live import LiveFrame, LiveSource


class LiveSession:
    """A live run you can ask more of while it goes. Use as a context manager, or call `stop()`."""

    def __init__(self, backend: Backend, source: LiveSource, out: Path | str | None = None, instruction: str | None = None, *,
                 mode: str = DEFAULT_MODE, settings: LiveSettings | None = None, planner: Any = None,
                 lock: AbstractContextManager | None = None):
        self.out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="rvos-live-"))
        request = Request(instruction, (), mode) if instruction is not None else None
        self.source = source
        self.segmentation = LiveSegmentation(source, backend, request, self.out, settings=settings, planner=planner, lock=lock)
        self.segmentation.on_frame = self._seen
        self._latest: tuple[LiveFrame, dict[int, np.ndarray]] | None = None
        self._lock = threading.Lock()
        self.result: LiveRun | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"live {source.spec}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = self.segmentation.run()
        except BaseException as exc:  # handed to whoever stops or waits for the run
            self.error = exc

    def _seen(self, frame: LiveFrame, masks: dict[int, np.ndarray]) -> None:
        with self._lock:
            self._latest = (frame, masks)

    # --- the API ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def latest(self) -> tuple[LiveFrame, dict[int, np.ndarray]] | None:
        """The newest handled frame and its masks by object id (None before the first)."""
        with self._lock:
            return self._latest

    @property
    def counts(self) -> dict[str, Any]:
        """Frames handled, dropped and received so far, and the recent latency."""
        return self.segmentation.runner.counts()

    @property
    def objects(self) -> dict[int, str]:
        """Every object found so far: id → what produced it."""
        return dict(self.segmentation.runner.objects)

    def ask(self, question: str | None = None, mode: str = DEFAULT_MODE, prompts: tuple[ObjectPrompt, ...] = (),
            timeout: float | None = None) -> Reply:
        """Look for more, from the next frame handled on (the objects already tracked go on); the grounding's
        reply once it is made. `prompts`: a person's clicks, boxes or masks on that frame (`frame_index` 0)."""
        if not self.running:
            raise UserError("the live run has ended; open the stream again to ask more")
        future = self.segmentation.add(Request(question, tuple(prompts), mode))
        return future.result(timeout)

    def click(self, x: float, y: float, on_object: bool = True, timeout: float | None = None) -> Reply:
        """A new object from a click at (x, y) in frame pixels, from the next frame handled on."""
        label = POSITIVE if on_object else NEGATIVE
        prompt = ObjectPrompt(1, 0, points=[(float(x), float(y))], point_labels=[label], source="person")
        return self.ask(None, prompts=(prompt,), timeout=timeout)

    def wait(self, timeout: float | None = None) -> LiveRun:
        """Until the stream ends (or a limit of the settings is reached): the run's summary."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the live run is still going after {timeout} s")
        if self.error is not None:
            raise self.error
        return self.result

    def stop(self, timeout: float | None = None) -> LiveRun:
        """End the run after the frame at hand; result.json is written."""
        self.segmentation.stop.set()
        return self.wait(timeout)

    def __enter__(self) -> LiveSession:
        return self

    def __exit__(self, *exc) -> None:
        if self.running:
            self.stop()
