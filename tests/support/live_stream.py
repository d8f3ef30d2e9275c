"""A live stream for tests and benchmarks: frames as the H.264 MPEG-TS a live encoder would send (zerolatency)."""

from __future__ import annotations

import http.server
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

from PIL import Image


def encode_ts(files: list[Path], path: Path, fps: int) -> Path:
    """These image files, in order, as an MPEG-TS file at `fps` frames a second."""
    import av

    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height = Image.open(files[0]).size
        stream.pix_fmt = "yuv420p"
        stream.options = {"tune": "zerolatency", "preset": "ultrafast"}
        for file in files:
            for packet in stream.encode(av.VideoFrame.from_image(Image.open(file).convert("RGB"))):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@contextmanager
def http_stream(path: Path):
    """`path` served over HTTP on a free loopback port (a thread of this process): yields its URL."""
    import functools
    import threading

    handler = functools.partial(QuietHandler, directory=str(path.parent))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_address[1]}/{path.name}"
        finally:
            httpd.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the test's output stays the test's
        pass
