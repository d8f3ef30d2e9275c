"""The output folder of one segmentation: masks/, result.json, overlay.mp4.

Everything is written into a hidden temporary folder beside the target and renamed
into place at the end, so a failed run leaves nothing behind and a finished one is whole.
Per-frame results are streamed to disk as they come: memory stays flat in video length.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import UserError
from agent.tracker.protocol import FrameMasks
from agent.video.source import VideoSource
from agent.writers.overlay import OverlayWriter
from agent.writers.palette import label_map, save_palette_png
from agent.writers.rle import encode_rle, mask_bbox


def check_output_folder(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty folder unless `overwrite`; refuse a path that is a file."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"output folder {out} is not empty; pass --overwrite or choose another --out")


class SegmentationWriter:
    """Use as a context manager; call `write` per frame, then `finish`."""

    def __init__(self, out: Path | str, video: VideoSource, instruction: str, overwrite: bool = False, overlay: bool = True):
        self.out = Path(out).expanduser().absolute()
        self.video = video
        self.names = video.frame_names
        check_output_folder(self.out, overwrite)
        self._created: list[Path] = []
        parent = self.out.parent
        missing = []
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        try:
            for folder in reversed(missing):
                folder.mkdir()
                self._created.append(folder)
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".tmp", dir=self.out.parent))
        except OSError as exc:
            self._remove_created()
            raise UserError(f"cannot write to {self.out}: {exc.strerror}; choose a writable --out") from None
        (self.tmp / "masks").mkdir()
        self._frames_log = open(self.tmp / "frames.jsonl", "w")
        self._overlay = (
            OverlayWriter(self.tmp / "overlay.mp4", video.size, video.fps, instruction) if overlay else None
        )
        self.frames_written = 0

    def __enter__(self) -> SegmentationWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def write(self, result: FrameMasks) -> None:
        width, height = self.video.size
        labels = label_map(result.masks, (height, width))
        save_palette_png(self.tmp / "masks" / f"{self.names[result.frame_index]}.png", labels)
        record = {"frame": result.frame_index, "name": self.names[result.frame_index], "objects": {}}
        for object_id, mask in sorted(result.masks.items()):
            record["objects"][str(object_id)] = {
                "rle": encode_rle(mask),
                "bbox": mask_bbox(mask),
                "score": round(float(result.scores.get(object_id, float(mask.any()))), 6),
            }
        self._frames_log.write(json.dumps(record) + "\n")
        if self._overlay is not None:
            if result.image is None:
                raise ValueError("the overlay needs the frame image; the tracker must pass it on")
            self._overlay.write(result.image, labels)
        self.frames_written += 1

    def write_empty(self, frame_index: int, image=None) -> None:
        self.write(FrameMasks(frame_index=frame_index, image=image))

    def finish(self, meta: dict[str, Any]) -> Path:
        """Write result.json (meta + every frame record) and move the folder into place."""
        if self.frames_written != len(self.video):
            raise RuntimeError(f"wrote {self.frames_written} of {len(self.video)} frames")
        self._frames_log.close()
        if self._overlay is not None:
            self._overlay.close()
            self._overlay = None
        log = self.tmp / "frames.jsonl"
        with open(self.tmp / "result.json", "w") as result, open(log) as frames:
            head = json.dumps(meta, indent=1)
            result.write(head[:-2] + ',\n "frames": [\n')
            for n, line in enumerate(frames):
                result.write((",\n" if n else "") + line.rstrip("\n"))
            result.write("\n ]\n}\n")
        log.unlink()
        if self.out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".old", dir=self.out.parent))
            os.replace(self.out, trash / "old")
            os.replace(self.tmp, self.out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(self.tmp, self.out)
        return self.out

    def abort(self) -> None:
        if not self._frames_log.closed:
            self._frames_log.close()
        if self._overlay is not None:
            try:
                self._overlay.close()
            except Exception:  # the folder is removed anyway
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._remove_created()

    def _remove_created(self) -> None:
        for folder in reversed(self._created):
            try:
                folder.rmdir()
            except OSError:
                pass


def masks_from_labels(labels: np.ndarray) -> dict[int, np.ndarray]:
    """Palette labels → object id → bool mask (the inverse of `label_map` without overlaps)."""
    return {int(i): labels == i for i in np.unique(labels) if i != 0}
