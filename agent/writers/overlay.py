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


class OverlayWriter:
    """H.264 video written frame by frame (yuv420p needs even sizes: odd ones are padded)."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float | None, caption: str = ""):
        import av

        self.caption = caption
        self.container = av.open(str(path), mode="w")
        self.stream = self.container.add_stream("libx264", rate=Fraction(fps or 24).limit_denominator(1001))
        width, height = size
        self.padded = (width + width % 2, height + height % 2)
        self.stream.width, self.stream.height = self.padded
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"crf": "23", "preset": "veryfast"}

    def write(self, frame: Image.Image, labels: np.ndarray) -> None:
        import av

        image = draw_overlay(frame, labels, self.caption)
        if image.size != self.padded:
            canvas = Image.new("RGB", self.padded)
            canvas.paste(image)
            image = canvas
        for packet in self.stream.encode(av.VideoFrame.from_image(image)):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
