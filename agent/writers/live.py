"""The output folder of a live run, written while the stream arrives: every file in it is valid at any moment.

`overlay.mp4` is a fragmented MP4 that plays while it grows (one fragment per frame, at the frame's time);
`frames.jsonl` gets one JSON line per handled frame (`frame`: its number in the stream, `name`, `timestamp`,
`latency_ms`, `objects` with COCO RLE as in result.json), written in one call and flushed; `masks/NNNNN.png` is
written beside and renamed into place, so a reader never sees half a PNG; `result.json` comes at the end (the
stream ended, it was stopped, or a limit was reached), also through a rename, and holds the run's counts and every
frame record. Unlike `SegmentationWriter` nothing goes through a hidden folder (the point is to read results as
they come), so the folder must be new or empty: a live run never replaces anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from agent.errors import UserError
from agent.masks import encode_rle, mask_bbox
from agent.writers.output import check_output_folder
from agent.writers.overlay import OverlayWriter
from agent.writers.palette import label_map, save_palette_png


def check_live_folder(out: Path | str) -> Path:
    """A live run's --out: a new or empty folder (checked before any model loads)."""
    out = Path(out).expanduser().absolute()
    check_output_folder(out, overwrite=False)  # a file, an unreadable or a non-empty folder are refused
    return out


def frame_name(index: int) -> str:
    return f"{index:05d}"


class LiveWriter:
    """Per-frame results as they come (`write`), then `finish(meta)` for result.json; `created`: whether any
    file was made (nothing is, until the first frame)."""

    def __init__(self, out: Path | str, size: tuple[int, int] | None, overlay: bool = True, caption: str = ""):
        self.out = check_live_folder(out)
        self.size = size  # (width, height); None until the first frame says
        self.frames_written = 0
        self.overlay, self.caption = overlay, caption
        self._log = None
        self._video: OverlayWriter | None = None
        self._made_folder = False

    def _open(self) -> None:
        try:
            self._made_folder = not self.out.exists()
            (self.out / "masks").mkdir(parents=True, exist_ok=True)
            self._log = open(self.out / "frames.jsonl", "w", encoding="utf-8")
            if self.overlay:
                self._video = OverlayWriter(self.out / "overlay.mp4", self.size, None, self.caption, live=True)
        except OSError as exc:
            raise UserError(f"cannot write to {self.out}: {exc.strerror}; choose a writable --out") from None

    @property
    def created(self) -> bool:
        return self._log is not None

    def write(self, index: int, timestamp: float, masks: dict[int, np.ndarray], scores: dict[int, float],
              latency_ms: float, image: Image.Image | None = None) -> dict:
        """One handled frame: its PNG and its overlay frame, then its line (the line last: a line names a PNG
        that is there)."""
        if self._log is None:
            self._open()
        name = frame_name(index)
        width, height = self.size
        png = self.out / "masks" / f"{name}.png"
        partial = png.with_name(f".{name}.png.part")
        labels = label_map(masks, (height, width))
        save_palette_png(partial, labels)
        os.replace(partial, png)
        if self._video is not None and image is not None:
            if image.size != self.size:  # a stream that changed resolution: its masks are at the first frame's
                image = image.resize(self.size, Image.BILINEAR)
            self._video.write(image, labels, timestamp)
        record = {"frame": index, "name": name, "timestamp": round(timestamp, 6), "latency_ms": round(latency_ms, 3),
                  "objects": {str(i): {"rle": encode_rle(m), "bbox": mask_bbox(m),
                                       "score": round(float(scores.get(i, float(m.any()))), 6)}
                              for i, m in sorted(masks.items())}}
        self._log.write(json.dumps(record) + "\n")  # one write: a reader sees whole lines (and at worst not the last)
        self._log.flush()
        self.frames_written += 1
        return record

    def finish(self, meta: dict[str, Any]) -> Path:
        """result.json: `meta` and every frame record from frames.jsonl (which stays, as written)."""
        if self._log is None:
            self._open()
        self._log.close()
        if self._video is not None:
            self._video.close()
            self._video = None
        result = self.out / "result.json"
        partial = self.out / ".result.json.part"
        with open(partial, "w", encoding="utf-8") as file, open(self.out / "frames.jsonl", encoding="utf-8") as frames:
            head = json.dumps(meta, indent=1)
            file.write(head[:-2] + ',\n "frames": [\n')
            for n, line in enumerate(frames):
                file.write((",\n" if n else "") + line.rstrip("\n"))
            file.write("\n ]\n}\n")
        os.replace(partial, result)
        return self.out

    def remove(self) -> None:
        """Take back what this writer made (a run that received nothing leaves nothing)."""
        if self._log is not None:
            self._log.close()
            if self._video is not None:
                self._video.close()
            for path in (self.out / "frames.jsonl", self.out / "overlay.mp4", self.out / "masks"):
                if path.is_dir():
                    path.rmdir() if not any(path.iterdir()) else None
                elif path.exists():
                    path.unlink()
            if self._made_folder:
                try:
                    self.out.rmdir()
                except OSError:
                    pass
