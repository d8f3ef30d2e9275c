"""The output folder of one segmentation: masks/, result.json, overlay.mp4.

Everything is written into a hidden temporary folder beside the target and renamed
into place at the end, so a failed run leaves nothing behind and a finished one is whole.
Per-frame results are streamed to disk as they come: memory stays flat in video length.
Overwriting replaces only a folder that holds an earlier output of ours and nothing else: a
person's own folder (`--out ~/Documents`) is refused, never moved aside and deleted.
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
from agent.masks import encode_rle, mask_bbox


# What an earlier output holds: these files, and these folders holding only files of this kind.
OUTPUT_FILES = ("result.json", "overlay.mp4")
OUTPUT_FOLDERS = {"masks": ".png", "trace": ".jpg"}


def _read_result(path: Path) -> dict | None:
    """Our result.json's content, or None when the file is not one this writer wrote."""
    try:
        with open(path, encoding="utf-8") as file:
            result = json.load(file)
    except (OSError, ValueError):
        return None
    frames = result.get("frames") if isinstance(result, dict) else None
    if not isinstance(frames, list) or not frames:
        return None
    if not all(isinstance(f, dict) and {"frame", "name", "objects"} <= f.keys() for f in frames):
        return None
    return result


def foreign_entry(out: Path) -> str | None:
    """Why `out` is not an earlier output of ours (None: it is one, or it is empty).

    Ours: our result.json, and beside it only overlay.mp4, masks/ holding the PNGs of the frames that
    result.json lists and trace/ holding the images its trace names. A symbolic link is never ours."""
    entries = {entry.name: entry for entry in os.scandir(out)}
    if not entries:
        return None
    found = []  # what the folder holds, as paths relative to it
    for name in sorted(entries):
        entry = entries[name]
        if name in OUTPUT_FOLDERS and entry.is_dir(follow_symlinks=False):
            inner = sorted(os.scandir(entry.path), key=lambda e: e.name)
            odd = next((e for e in inner if not e.is_file(follow_symlinks=False)), None)
            if odd is not None:
                return f"holds files that are not an earlier rvos output (e.g. {name}/{odd.name})"
            found += [f"{name}/{e.name}" for e in inner]
        elif name in OUTPUT_FILES and entry.is_file(follow_symlinks=False):
            found.append(name)
        else:
            return f"holds files that are not an earlier rvos output (e.g. {name})"
    result = _read_result(out / "result.json") if "result.json" in entries else None
    if result is None:
        return "is not an earlier rvos output (no result.json that rvos wrote)"
    ours = {*OUTPUT_FILES, *(f"masks/{f['name']}.png" for f in result["frames"])}
    ours |= {image for step in result.get("trace") or [] if isinstance(step, dict)
             for image in step.get("images") or [] if isinstance(image, str) and image.startswith("trace/")}
    stray = next((path for path in found if path not in ours), None)
    if stray is not None:
        return f"holds files that are not an earlier rvos output (e.g. {stray})"
    return None


def check_output_folder(out: Path, overwrite: bool) -> None:
    """Refuse a path that is a file, and a non-empty folder unless `overwrite`; even then, refuse
    one that holds anything but an earlier output of ours (a person's own folder is never replaced)."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder path")
    try:
        if not out.is_dir() or not any(out.iterdir()):
            return
        if not overwrite:
            raise UserError(f"output folder {out} is not empty; pass --overwrite or choose another --out")
        reason = foreign_entry(out)
    except OSError as exc:
        raise UserError(f"cannot read output folder {out}: {exc.strerror}; choose another --out") from None
    if reason:
        raise UserError(f"output folder {out} {reason}; choose an empty or new folder")


def _remove_output(folder: Path) -> None:
    """Delete an earlier output of ours, entry by entry: anything else found there (it may have
    appeared since it was checked) stays where it is."""
    if folder.is_symlink():  # the link goes, the folder it pointed to stays
        folder.unlink()
        return
    for name in OUTPUT_FILES:
        if (folder / name).is_file():
            (folder / name).unlink()
    for name, suffix in OUTPUT_FOLDERS.items():
        if (folder / name).is_dir() and not (folder / name).is_symlink():
            for entry in os.scandir(folder / name):
                if entry.is_file(follow_symlinks=False) and entry.name.endswith(suffix):
                    os.unlink(entry.path)
    for path in (*(folder / name for name in OUTPUT_FOLDERS), folder):
        try:
            path.rmdir()
        except OSError:  # absent, or not empty: what is left is not ours
            pass


class SegmentationWriter:
    """Use as a context manager; call `write` per frame, then `finish`."""

    def __init__(self, out: Path | str, video: VideoSource, instruction: str, overwrite: bool = False, overlay: bool = True):
        self.out = Path(out).expanduser().absolute()
        self.video = video
        self.names = video.frame_names
        self.overwrite = overwrite
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
        try:  # again: the folder may have changed while the video was segmented
            check_output_folder(self.out, self.overwrite)
        except UserError:
            self.abort()
            raise
        if self.out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".old", dir=self.out.parent))
            os.replace(self.out, trash / "old")
            os.replace(self.tmp, self.out)
            _remove_output(trash / "old")
            try:
                trash.rmdir()
            except OSError:
                pass
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
