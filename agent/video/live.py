"""A live video source: frames decoded as they arrive, in a thread of their own, ahead of whoever consumes them.

`LiveSource.open(spec)` takes `-` (a stream on standard input), a named pipe, a URL FFmpeg opens (rtsp://, rtmp://,
http(s)://, udp://, srt://, …), a capture device (`/dev/video0`, through FFmpeg's v4l2 input) or a video file;
`LiveSource.pushed()` takes frames someone else hands over (a browser's camera: `push`, then `end`).
Decoding runs in a daemon thread into a small bounded queue. A live source keeps the newest frames when the
consumer is slower than the stream (the oldest queued frame is dropped and counted): waiting for a slow model
would only make every later result later. A file is read at the consumer's pace instead (nothing is dropped: it
is not going anywhere), which makes `--live` on a file the offline run of the same causal algorithm.

Each frame is a `LiveFrame`: its number in the stream (dropped ones count), its timestamp in seconds (the
stream's own when it has one) and the monotonic time it was decoded, from which latency is measured.
"""

from __future__ import annotations

import collections
import os
import re
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from agent.errors import UserError

STREAM_URL = re.compile(r"^(rtsp|rtsps|rtmp|rtmps|http|https|udp|tcp|srt|rtp)://", re.IGNORECASE)
DEFAULT_QUEUE = 2  # frames decoded ahead: enough to hide decoding behind the model, few enough to stay current
# FFmpeg's probing reads seconds of a stream before the first frame by default; a live source needs less to start
LOW_DELAY_OPTIONS = {"probesize": "65536", "analyzeduration": "500000"}  # (fflags=nobuffer: no frame decoded)


def live_kind(spec: str) -> str | None:
    """What kind of live source `spec` names ("stdin", "pipe", "url", "device"), or None (a file or folder)."""
    if spec == "-":
        return "stdin"
    if STREAM_URL.match(spec):
        return "url"
    if spec.startswith("/dev/video"):
        return "device"
    try:
        if stat.S_ISFIFO(os.stat(spec).st_mode):
            return "pipe"
    except OSError:
        pass
    return None


def check_live_spec(spec: str) -> tuple[str, str | None]:
    """`spec` and its kind (None: a video file), once what can be checked without reading it is: a missing
    file, a folder, a device that is not there."""
    kind = live_kind(spec)
    if kind is None:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise UserError(f"{spec} is not a stream, a named pipe, a capture device or a video file; give `-` "
                            "(standard input), a pipe, an rtsp/rtmp/http(s)/udp/srt URL, /dev/videoN or a video file")
        return str(path), None
    if kind == "device" and not os.path.exists(spec):
        raise UserError(f"capture device {spec} does not exist; plug in a camera or give another /dev/videoN")
    return spec, kind


@dataclass
class LiveFrame:
    index: int  # the frame's number in the stream, dropped frames included
    timestamp: float  # seconds, the stream's own clock when it has one (else since the first frame arrived)
    received: float  # time.monotonic() when it was decoded
    image: Image.Image


class _End:
    """Put in the queue when the stream ends; `reason` says why (None: it ended normally)."""

    def __init__(self, reason: str | None = None):
        self.reason = reason


class LiveSource:
    """Frames of a stream, decoded in a thread; iterate with `next_frame()`, stop with `close()`."""

    def __init__(self, spec: str, kind: str | None, *, queue_size: int = DEFAULT_QUEUE, reconnect: float = 0.0,
                 drop: bool | None = None, decode: bool = True):
        if queue_size < 1:
            raise UserError("the live queue must hold at least one frame")
        self.spec, self.kind = spec, kind
        self.drop = kind is not None if drop is None else drop  # a file is read at the consumer's pace
        self.reconnect = reconnect if kind == "url" else 0.0  # only a network stream can come back
        self.received = 0  # frames decoded (handled + dropped + still queued)
        self.dropped = 0  # frames the queue let go because the consumer was behind
        self.reconnects = 0
        self.last_arrival: float | None = None  # time.monotonic() of the latest decoded frame
        self._queue: collections.deque = collections.deque()
        self._size = queue_size
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._started_at: float | None = None
        self._thread = None
        if decode:
            self._thread = threading.Thread(target=self._decode_all, name=f"live-decoder {spec}", daemon=True)
            self._thread.start()

    @classmethod
    def open(cls, spec: str, **options: Any) -> LiveSource:
        """A live source for `spec` (see `check_live_spec`); a stream that cannot be opened ends with the reason
        (`end_reason`)."""
        spec, kind = check_live_spec(spec)
        return cls(spec, kind, **options)

    @classmethod
    def pushed(cls, name: str = "pushed frames", queue_size: int = DEFAULT_QUEUE) -> LiveSource:
        """A live source whose frames someone else hands over (`push`, then `end`): a browser's camera, frames
        from a notebook. Newest kept, as for any live source."""
        return cls(name, "pushed", queue_size=queue_size, decode=False)

    def push(self, image: Image.Image, timestamp: float | None = None) -> bool:
        """Hand over the next frame (`timestamp`: seconds on the sender's clock; default: since the first frame).
        False once the source is closed or ended."""
        if self._thread is not None:
            raise RuntimeError("this source decodes its own stream; only LiveSource.pushed() takes frames")
        if self._ended:
            return False
        return self._put_image(image if image.mode == "RGB" else image.convert("RGB"), timestamp)

    def end(self, reason: str | None = None) -> None:
        """No more frames: the consumer finishes what is queued, then sees the end."""
        with self._cond:
            if not self._ended:
                self._ended = True
                self._queue.append(_End(reason))
                self._cond.notify_all()

    _ended = False

    # --- the decoding thread ---------------------------------------------------------------
    def _container(self):
        import av

        target = "pipe:0" if self.kind == "stdin" else self.spec
        options = dict(LOW_DELAY_OPTIONS) if self.kind is not None else {}
        return av.open(target, format="v4l2" if self.kind == "device" else None, options=options,
                       timeout=(30.0, 10.0) if self.kind == "url" else None)

    def _decode_all(self) -> None:
        reason = None
        deadline = None
        while not self._stopping.is_set():
            try:
                with self._container() as container:
                    if not container.streams.video:
                        reason = f"{self.spec} has no video stream"
                        break
                    stream = container.streams.video[0]
                    # frame threading holds back as many frames as it has threads: latency. Slices only, when live
                    stream.thread_type = "SLICE" if self.kind is not None else "AUTO"
                    for frame in container.decode(stream):
                        deadline = None
                        if not self._put(frame):
                            return
                reason = None  # the stream ended
            except Exception as exc:  # av.error.FFmpegError, OSError: a broken stream ends like a closed one
                reason = f"{self.spec}: {exc}"
            if self.reconnect <= 0 or self._stopping.is_set():
                break
            deadline = deadline or time.monotonic() + self.reconnect
            if time.monotonic() >= deadline:
                reason = f"{self.spec} did not come back within {self.reconnect:g} s ({reason or 'the stream ended'})"
                break
            self.reconnects += 1
            time.sleep(min(1.0, self.reconnect / 4))
        self.end(reason)

    def _put(self, frame) -> bool:
        return self._put_image(frame.to_image(), float(frame.time) if frame.time is not None else None)

    def _put_image(self, image: Image.Image, timestamp: float | None) -> bool:
        """Queue one frame (dropping the oldest when full and live; waiting when not); False: stopped."""
        now = time.monotonic()
        if self._started_at is None:
            self._started_at = now
        self.last_arrival = now
        timestamp = timestamp if timestamp is not None else now - self._started_at
        self.frame_size = self.frame_size or image.size
        item = LiveFrame(self.received, timestamp, now, image)
        with self._cond:
            while not self.drop and len(self._queue) >= self._size and not self._stopping.is_set():
                self._cond.wait(0.1)
            if self._stopping.is_set():
                return False
            if len(self._queue) >= self._size:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(item)
            self.received += 1
            self._cond.notify_all()
        return True

    # --- the consumer's side ---------------------------------------------------------------
    def next_frame(self, timeout: float | None = None, max_age: float | None = None) -> LiveFrame | None:
        """The next frame, waiting for it; None when the stream has ended (see `end_reason`), on `timeout`
        (seconds, see `timed_out`) or once closed. `max_age`: skip (and count as dropped) queued frames decoded
        longer ago than this while a newer one waits: the latency bound."""
        self.timed_out = False
        with self._cond:
            if not self._cond.wait_for(lambda: self._queue or self._stopping.is_set(), timeout):
                self.timed_out = True
                return None
            if self._stopping.is_set() and not self._queue:
                return None
            now = time.monotonic()
            while (max_age is not None and len(self._queue) > 1 and isinstance(self._queue[1], LiveFrame)
                   and now - self._queue[0].received > max_age):
                self._queue.popleft()
                self.dropped += 1
            item = self._queue[0]
            if isinstance(item, _End):
                self.end_reason = item.reason
                return None
            self._queue.popleft()
            self._cond.notify_all()
            return item

    end_reason: str | None = None
    timed_out: bool = False
    frame_size: tuple[int, int] | None = None  # (width, height) of the first frame, once one has come

    def wait_for_first(self, timeout: float) -> tuple[int, int] | None:
        """The first frame's size, waiting up to `timeout` seconds for it (None: none came); it stays queued."""
        with self._cond:
            self._cond.wait_for(lambda: self.frame_size is not None or any(isinstance(i, _End) for i in self._queue)
                                or self._stopping.is_set(), timeout)
        return self.frame_size

    @property
    def pending(self) -> int:
        """Frames decoded and still queued (neither handled nor dropped yet)."""
        with self._cond:
            return sum(1 for item in self._queue if isinstance(item, LiveFrame))

    def close(self) -> None:
        """Stop decoding. The thread is a daemon: one blocked reading a silent stream does not keep the process."""
        self._stopping.set()
        with self._cond:
            self._ended = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class GrowingFrames:
    """The `VideoSource` interface a streaming tracker reads (lite's: `size`, `fps`, `len`, `frames(indices)` in
    order, `source_index`), over frames that arrive while it runs. Its length is only a bound (trackers iterate
    `range(len(video))` lazily): the runner pushes frame t before asking the tracker for frame t's masks, and
    stops asking when the stream ends, so the tracker never waits and never reads ahead. A frame is handed over
    once and forgotten: memory stays flat however long the stream runs."""

    BOUND = 1 << 40

    def __init__(self, size: tuple[int, int], fps: float | None = None):
        self.size = self.original_size = size
        self.fps = fps
        self.path = None
        self._frames: dict[int, Image.Image] = {}
        self.pushed = 0

    def push(self, image: Image.Image) -> int:
        """Add the next frame; returns its index in this source."""
        if image.size != self.size:
            image = image.resize(self.size, Image.BILINEAR)  # a stream that changes resolution midway
        self._frames[self.pushed] = image
        self.pushed += 1
        return self.pushed - 1

    def __len__(self) -> int:
        return self.BOUND

    @property
    def num_frames(self) -> int:
        return self.BOUND

    def source_index(self, index: int) -> int:
        return index

    def frames(self, indices=None):
        wanted = range(self.BOUND) if indices is None else indices
        last = -1
        for i in wanted:  # lazily: the indices a tracker asks for run far past what has arrived
            if i <= last:
                raise ValueError("a live source is read forwards only")
            last = i
            for older in [k for k in self._frames if k < i]:  # frames a tracker took elsewhere (its keyframes)
                del self._frames[older]
            image = self._frames.pop(i, None)
            if image is None:
                raise RuntimeError(f"live frame {i} was asked for before it arrived (the runner must push it first)")
            yield i, image

    def read_many(self, indices) -> dict[int, Image.Image]:
        """Frames by index (a tracker's prompted frames: in a live run only the episode's first, already taken)."""
        return dict(self.frames(sorted(indices)))

    def span(self, indices):
        raise RuntimeError("a live source has no frames to go back to: the live run prompts every object on its first frame")
