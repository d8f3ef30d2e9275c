"""Segmenting a live stream as it arrives: causal, with bounded latency, results on disk frame by frame.

`run_live(LiveSource.open(spec), backend, Request(...), out)` (or `LiveSegmentation(...)`, to ask more while it
runs). Causal: a frame's masks come from that frame and
earlier ones only; nothing looks ahead and nothing runs backwards. How:

- Grounding: the request goes through `agent.pipeline` (every door's one path, its modes and verification) on one
  frame, the current one, as a one-frame video: on each of the first `warmup` frames of the stream until it finds
  an object, and (with `reground` seconds) again every `reground` seconds and soon after every object is lost
  (at most once per `LOST_RETRY_SECONDS`). A person's visual prompts apply to the first frame handled.
- Tracking: a grounding starts an *episode*, one ordinary `tracker.track` call over a `GrowingFrames` (the
  `VideoSource` interface, frames pushed as they arrive, its length only a bound) with every prompt on its first
  frame, so the tracker has nothing to track backwards; the runner pushes frame t before it asks the tracker's
  generator for frame t, and stops asking when the stream ends. A new grounding that finds objects ends the
  episode and starts the next from its frame; an object keeps its id when its new mask overlaps its last one
  (IoU ≥ `SAME_OBJECT_IOU`).
- Latency: decoding runs ahead in its own thread (`agent.video.live`); when the model is slower than the stream
  the queue keeps the newest frames and counts the dropped ones, and `max_latency` drops queued frames older
  than that while a newer one waits. The tracker sees the handled frames in order, a dropped one as a larger step.

- More while it runs (`LiveSegmentation.add`, from any thread: a live session's questions and clicks): grounded
  on the next frame handled; the episode restarts there with the new prompts and, as mask prompts, the last masks
  of the objects other requests found, so those go on being tracked.

Output (`agent.writers.live`): frames.jsonl, masks/ and a fragmented overlay.mp4 as frames are handled,
result.json at the end (the stream ended, a stop was asked for — SIGTERM, Ctrl-C —, `duration` seconds passed or
`max_frames` were received).
"""

from __future__ import annotations

import math
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from agent.backends.base import Backend
from agent.errors import UserError
from agent.grounder.protocol import ObjectPrompt
from agent.masks import mask_iou
from agent.pipeline import Pipeline, Request
from agent.video.live import GrowingFrames, LiveFrame, LiveSource
from agent.writers.live import LiveWriter

SAME_OBJECT_IOU = 0.3  # a regrounded object overlapping a tracked one this much is that object (keeps its id)
LOST_RETRY_SECONDS = 1.0  # with every object lost, ground again at most this often: each try costs frames
STALL_SECONDS = 10.0  # a stream silent this long has ended (a network stream: after its reconnect time)
DEFAULT_WARMUP = 5


@dataclass
class LiveSettings:
    warmup: int = DEFAULT_WARMUP  # frames at the stream's start on which to look for the object
    reground: float = 0.0  # seconds between groundings (0: only until the first one finds something)
    max_latency: float | None = None  # seconds a queued frame may wait before it is dropped
    duration: float | None = None  # stop after this many seconds of stream received
    max_frames: int | None = None  # stop after this many frames received

    def check(self) -> LiveSettings:
        if not isinstance(self.warmup, int) or self.warmup < 1:
            raise UserError(f"--warmup must be a whole number of frames ≥ 1, not {self.warmup!r}")
        for name in ("reground", "max_latency", "duration"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0 or (value == 0 and name != "reground")):
                raise UserError(f"--{name.replace('_', '-')} must be a number of seconds > 0, not {value!r}")
        if self.max_frames is not None and self.max_frames < 1:
            raise UserError(f"--max-frames must be ≥ 1, not {self.max_frames!r}")
        return self

    def record(self) -> dict[str, Any]:
        return {"warmup": self.warmup, "reground": self.reground, "max_latency": self.max_latency,
                "duration": self.duration, "max_frames": self.max_frames}


@dataclass
class LiveRun:
    out: Path
    handled: int
    dropped: int
    received: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    ended: str
    objects: dict[int, str] = field(default_factory=dict)
    answer: str = ""


class _Episode:
    """One tracker call from the frame a grounding was made on, fed frame by frame."""

    def __init__(self, backend: Backend, image, prompts, fps: float | None):
        self.frames = GrowingFrames(image.size, fps)
        self.frames.push(image)  # frame 0: the tracker takes it from `keyframes`; pushed to keep the numbering
        self._track: Iterator = backend.tracker.track(self.frames, prompts, {0: image})
        self._first = True

    def step(self, image):
        if self._first:
            self._first = False
        else:
            self.frames.push(image)
        return next(self._track)

    def close(self) -> None:
        self._track.close()


def percentile_ms(latencies: list[float], q: float) -> float | None:
    return round(float(np.percentile(latencies, q)) * 1000, 3) if latencies else None


@contextmanager
def stop_on_signals(stop: threading.Event):
    """SIGTERM and Ctrl-C ask the run to stop after the frame at hand (its files then finished); only the main
    thread can take signals, so elsewhere this does nothing and `stop` is the way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def ask_to_stop(signum, frame):
        stop.set()

    for s in previous:
        signal.signal(s, ask_to_stop)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class _Runner:
    def __init__(self, source: LiveSource, backend: Backend, request: Request, writer: LiveWriter,
                 settings: LiveSettings, planner: Any, progress: Callable[[dict], None] | None):
        self.source, self.backend, self.writer = source, backend, writer
        self.settings, self.planner, self.progress = settings, planner, progress
        self.on_frame: Callable[[LiveFrame, dict[int, np.ndarray]], None] | None = None
        self.episode: _Episode | None = None
        self.requests: list[Request | None] = [request]  # the run's request (or None), then each one asked while it runs
        self.added: queue.SimpleQueue = queue.SimpleQueue()  # (request number, its Future) not yet grounded
        self.origin: dict[int, int] = {}  # object id → the number of the request that found it
        self._adding = threading.Lock()
        self.ended: str | None = None  # why the run ended, once it has
        self.objects: dict[int, str] = {}  # every object seen, by id → what produced it
        self.last_masks: dict[int, np.ndarray] = {}
        self.groundings: list[dict] = []
        self.answer = ""
        self.last_ground: float | None = None  # timestamp of the last grounding tried
        self.last_found: float | None = None  # ... and of the last one that found objects
        self.latencies: list[float] = []
        self.mode = request.mode if request is not None else None

    def _due(self, frame: LiveFrame) -> bool:
        """Whether to ground on this frame."""
        if self.episode is None:
            if frame.index < self.settings.warmup or self.last_ground is None:
                return True
            return self.settings.reground > 0 and frame.timestamp - self.last_ground >= self.settings.reground
        if self.settings.reground <= 0:
            return False
        lost = bool(self.last_masks) and not any(m.any() for m in self.last_masks.values())
        if lost and frame.timestamp - self.last_ground >= LOST_RETRY_SECONDS:
            return True
        return frame.timestamp - self.last_found >= self.settings.reground

    def add(self, request: Request) -> Future:
        """A request asked while the run goes on (another thread may call this): grounded on the next frame
        handled, its objects tracked from there beside the ones already tracked. The future gets its Reply."""
        if any(p.frame_index != 0 for p in request.prompts):
            raise UserError("in a live run a visual prompt applies to the next frame handled; drop its frame number")
        done: Future = Future()
        with self._adding:  # one number per request, and none once the run has ended
            if self.ended is not None:
                raise UserError(f"the live run has ended ({self.ended}); open the stream again to ask more")
            self.requests.append(request)
            self.added.put((len(self.requests) - 1, done))
        return done

    def _ground(self, frame: LiveFrame, number: int, repeat: bool) -> Any:
        """Request `number` on this frame alone; objects found start a new episode (ids kept where they
        overlap), which also carries on, from their last masks, the objects other requests found."""
        asked = self.requests[number]
        # a person's prompts stand for the frame they were given on: a repeat looks again for the words only
        request = Request(asked.instruction, (), asked.mode, asked.max_retries) if repeat else asked
        if request.instruction is None and repeat:
            return None
        reply = Pipeline(self.backend, [frame.image], progress=False, planner=self.planner).run(request)
        self.last_ground = frame.timestamp
        self.mode = reply.mode
        self.groundings.append({"frame": frame.index, "timestamp": round(frame.timestamp, 6), "request": number,
                                "instruction": asked.instruction, "answer": reply.answer, "objects": len(reply.objects)})
        if not reply.objects or not reply.prompts:
            self.answer = self.answer or reply.answer
            return reply
        found = reply.masks(0)
        ids = self._match(found)
        prompts = [replace(p, object_id=ids[p.object_id], frame_index=0) for p in reply.prompts if p.object_id in ids]
        for old, new in ids.items():
            self.objects.setdefault(new, reply.objects.get(old, "grounder"))
            self.origin.setdefault(new, number)
        carried = [ObjectPrompt(i, 0, mask=m, source="person") for i, m in sorted(self.last_masks.items())
                   if self.origin.get(i) != number and i not in ids.values() and m.any()]
        if self.episode is not None:
            self.episode.close()
        self.episode = _Episode(self.backend, frame.image, prompts + carried, None)
        self.answer, self.last_found = reply.answer, frame.timestamp
        return reply

    def _ground_due(self, frame: LiveFrame) -> None:
        """The run's own grounding when due (each worded request again, when regrounding), then what was asked
        meanwhile."""
        if self._due(frame):
            first = not self.groundings
            for number, request in enumerate(self.requests[:len(self.requests) if not first else 1]):
                if request is not None and (number == 0 or request.instruction is not None):
                    self._ground(frame, number, repeat=not first)
        while not self.added.empty():
            number, done = self.added.get()
            try:
                done.set_result(self._ground(frame, number, repeat=False))
            except Exception as exc:  # the asker hears of it; the run goes on with what it tracks
                done.set_exception(exc)

    def _match(self, found: dict[int, np.ndarray]) -> dict[int, int]:
        """The new objects' ids → ids of the tracked objects they overlap (greedily, best first), else new ids."""
        pairs = sorted(((mask_iou(m, old), new, i) for new, m in found.items() for i, old in self.last_masks.items()
                        if m.any() and old.any()), reverse=True)
        ids: dict[int, int] = {}
        for iou, new, old in pairs:
            if iou >= SAME_OBJECT_IOU and new not in ids and old not in ids.values():
                ids[new] = old
        next_id = max(self.objects, default=0) + 1
        for new in sorted(found):
            if new not in ids:
                ids[new], next_id = next_id, next_id + 1
        return ids

    def handle(self, frame: LiveFrame) -> None:
        self._ground_due(frame)
        masks: dict[int, np.ndarray] = {}
        scores: dict[int, float] = {}
        if self.episode is not None:
            tracked = self.episode.step(frame.image)
            masks, scores = dict(tracked.masks), dict(tracked.scores)
        height, width = frame.image.size[::-1]
        for object_id in self.objects:  # every object known so far, empty where it is not tracked now
            masks.setdefault(object_id, np.zeros((height, width), bool))
        self.last_masks = masks
        latency = time.monotonic() - frame.received
        self.latencies.append(latency)
        self.writer.write(frame.index, frame.timestamp, masks, scores, latency * 1000, frame.image)
        if self.on_frame is not None:
            self.on_frame(frame, masks)
        if self.progress is not None:
            self.progress(self.counts())

    def refuse_waiting(self, why: str) -> None:
        """The run has ended: whoever still waits for an answer hears why, and nothing more is taken."""
        with self._adding:
            self.ended = why
        while not self.added.empty():
            self.added.get()[1].set_exception(UserError(f"the live run ended ({why}) before the question was taken up"))

    def counts(self) -> dict[str, Any]:
        return {"handled": self.writer.frames_written, "dropped": self.source.dropped, "received": self.source.received,
                "latency_p50_ms": percentile_ms(self.latencies[-100:], 50)}


class LiveSegmentation:
    """A live run that can be asked more while it goes (`add`, from any thread) and watched (`on_frame`);
    `run()` segments until the source ends, `stop` is set (SIGTERM and Ctrl-C set it in the main thread) or a
    limit of `settings` is reached; the files in `out` are valid all along and result.json is written at the end.
    `request` may be None: nothing is looked for until something is added."""

    def __init__(self, source: LiveSource, backend: Backend, request: Request | None, out: Path | str, *,
                 settings: LiveSettings | None = None, planner: Any = None, stop: threading.Event | None = None,
                 progress: Callable[[dict], None] | None = None, lock: AbstractContextManager | None = None,
                 overlay: bool = True):
        self.settings = (settings or LiveSettings()).check()
        # held while a frame is handled: a server's lock for a model that runs one job at a time
        self.lock = lock if lock is not None else nullcontext()
        if request is not None and any(p.frame_index != 0 for p in request.prompts):
            raise UserError("in a live run a visual prompt applies to the first frame handled; drop its @FRAME")
        self.source, self.backend, self.request, self.out = source, backend, request, out
        self.stop = stop or threading.Event()
        # checks the folder now; makes nothing until the first frame
        self.writer = LiveWriter(out, None, overlay, (request.instruction or "") if request is not None else "")
        self.runner = _Runner(source, backend, request, self.writer, self.settings, planner, progress)

    @property
    def on_frame(self):
        return self.runner.on_frame

    @on_frame.setter
    def on_frame(self, watch: Callable[[LiveFrame, dict[int, np.ndarray]], None] | None) -> None:
        self.runner.on_frame = watch  # called with each handled frame and its masks, in the run's thread

    def add(self, request: Request) -> Future:
        return self.runner.add(request)

    def run(self) -> LiveRun:
        source, runner, settings = self.source, self.runner, self.settings
        first_frame: LiveFrame | None = None
        ended = "the stream ended"
        started = time.monotonic()
        try:
            with stop_on_signals(self.stop):
                while True:
                    if self.stop.is_set():
                        ended = "stopped (a signal or a stop request)"
                        break
                    frame = source.next_frame(timeout=0.5, max_age=settings.max_latency)
                    if frame is None:
                        if source.timed_out:
                            waited = time.monotonic() - (source.last_arrival or started)
                            if waited < STALL_SECONDS + source.reconnect:
                                continue
                            ended = f"no frame for {STALL_SECONDS + source.reconnect:g} s: the stream stalled"
                            break
                        ended = source.end_reason or ("the stream ended" if not self.stop.is_set() else "stopped")
                        break
                    if first_frame is None:
                        first_frame = frame
                        self.writer.size = frame.image.size
                    with self.lock:
                        runner.handle(frame)
                    if settings.max_frames is not None and source.received >= settings.max_frames:
                        ended = f"--max-frames {settings.max_frames} reached"
                        break
                    if settings.duration is not None and frame.received - first_frame.received >= settings.duration:
                        ended = f"--duration {settings.duration:g} s reached"
                        break
        finally:
            source.close()
            if runner.episode is not None:
                runner.episode.close()
            runner.refuse_waiting(ended)
        if first_frame is None:
            raise UserError(f"no frame came from {source.spec} ({ended}); check that the stream is playing and is a video")
        counts = runner.counts()
        # received but never handled (still queued when the run stopped, or past --max-frames): dropped too
        dropped = counts["received"] - counts["handled"]
        request = self.request
        meta = {"input": source.spec, "live": True, "instruction": request.instruction if request else None,
                "answer": runner.answer, "mode": runner.mode, "frame_size": list(first_frame.image.size),
                "objects": [{"id": i, "produced_by": d, "request": runner.origin.get(i)} for i, d in sorted(runner.objects.items())],
                "requests": [{"instruction": r.instruction if r else None, "prompts": len(r.prompts) if r else 0}
                             for r in runner.requests],
                "frames_received": counts["received"], "frames_handled": counts["handled"], "dropped_frames": dropped,
                "latency_ms": {"p50": percentile_ms(runner.latencies, 50), "p95": percentile_ms(runner.latencies, 95)},
                "ended": ended, "reconnects": source.reconnects, "groundings": runner.groundings,
                "settings": settings.record(), **self.backend.provenance()}
        path = self.writer.finish(meta)
        return LiveRun(path, counts["handled"], dropped, counts["received"], meta["latency_ms"]["p50"],
                       meta["latency_ms"]["p95"], ended, dict(runner.objects), runner.answer)


def run_live(source: LiveSource, backend: Backend, request: Request | None, out: Path | str, **options: Any) -> LiveRun:
    """Segment `source` as it arrives (see `LiveSegmentation`): the run's summary once it has ended."""
    return LiveSegmentation(source, backend, request, out, **options).run()


def print_progress(counts: dict) -> None:
    """Frames handled, dropped and the recent latency, on one line that rewrites itself on a terminal."""
    now = time.monotonic()
    if now - getattr(print_progress, "last", 0.0) < 1.0:
        return
    print_progress.last = now
    end = "\r" if sys.stderr.isatty() else "\n"
    latency = counts["latency_p50_ms"]
    print(f"live: {counts['handled']} handled, {counts['dropped']} dropped, latency {latency or 0:.0f} ms", end=end,
          file=sys.stderr, flush=True)
