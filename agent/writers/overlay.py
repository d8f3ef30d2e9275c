"""`overlay.mp4`: coloured masks and the instruction drawn on the frames, for people to look at."""

from __future__ import annotations

import textwrap
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from agent.writers.palette import davis_palette

_PALETTE = davis_palette()


def draw_overlay(frame: Image.Image, labels: np.ndarray, caption: str = "", alpha: float = 0.5) -> Image.Image:
    """The frame with each object id tinted in its palette colour and the caption on top."""
    pixels = np.asarray(frame.convert("RGB"), dtype=np.float32)
    colours = _PALETTE[labels].astype(np.float32)
    tinted = np.where(labels[..., None] > 0, (1 - alpha) * pixels + alpha * colours, pixels)
    image = Image.fromarray(tinted.round().astype(np.uint8))
    if caption:
        draw = ImageDraw.Draw(image)
        size = max(12, image.height // 30)
        font = ImageFont.load_default(size=size)
        lines = textwrap.wrap(caption, width=max(20, image.width // (size // 2 + 1)))[:3]
        height = (size + 4) * len(lines) + 6
        draw.rectangle([0, 0, image.width, height], fill=(0, 0, 0))
        for row, line in enumerate(lines):
            draw.text((6, 3 + row * (size + 4)), line, fill=(255, 255, 255), font=font)
    return image


# A live overlay: an MP4 in fragments (one per frame, each written out at once) that plays while it grows, and
# whose frames are at their own times (a live run handles frames at irregular times)
LIVE_MP4_OPTIONS = {"movflags": "frag_every_frame+empty_moov+default_base_moof", "flush_packets": "1"}
LIVE_TIME_BASE = Fraction(1, 1000)


class OverlayWriter:
    """H.264 video written frame by frame (yuv420p needs even sizes: odd ones are padded). `live`: a fragmented
    MP4 whose frames are written (and readable) as they come, each at the timestamp given to `write`."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float | None, caption: str = "", live: bool = False):
        import av

        self.caption, self.live = caption, live
        self.container = av.open(str(path), mode="w", format="mp4" if live else None,
                                 container_options=LIVE_MP4_OPTIONS if live else None)
        self.stream = self.container.add_stream("libx264", rate=Fraction(fps or 24).limit_denominator(1001))
        width, height = size
        self.padded = (width + width % 2, height + height % 2)
        self.stream.width, self.stream.height = self.padded
        self.stream.pix_fmt = "yuv420p"
        # live: no look-ahead, so each frame is encoded (and written) when it is given
        self.stream.options = {"crf": "23", "preset": "ultrafast", "tune": "zerolatency"} if live else {"crf": "23", "preset": "veryfast"}
        if live:
            self.stream.codec_context.time_base = LIVE_TIME_BASE
        self._last_pts = -1

    def write(self, frame: Image.Image, labels: np.ndarray, timestamp: float | None = None) -> None:
        import av

        image = draw_overlay(frame, labels, self.caption)
        if image.size != self.padded:
            canvas = Image.new("RGB", self.padded)
            canvas.paste(image)
            image = canvas
        video_frame = av.VideoFrame.from_image(image)
        if self.live:
            self._last_pts = max(self._last_pts + 1, round((timestamp or 0.0) / LIVE_TIME_BASE))
            video_frame.pts, video_frame.time_base = self._last_pts, LIVE_TIME_BASE
        for packet in self.stream.encode(video_frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
