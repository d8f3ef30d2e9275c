"""What the agent answers: text, objects, masks per frame (kept as RLE, decoded on demand), a trace."""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.grounder.protocol import ObjectPrompt
from agent.tracker.protocol import FrameMasks
from agent.trace import Step
from agent.video.source import VideoSource
from agent.writers.overlay import draw_overlay
from agent.writers.palette import label_map
from agent.masks import decode_rle, encode_rle


@dataclass
class Reply:
    question: str
    answer: str
    video: VideoSource
    objects: dict[int, str] = field(default_factory=dict)  # stable object id → what it is
    keyframes: list[int] = field(default_factory=list)
    trace: list[Step] = field(default_factory=list)
    mode: str = "direct"
    prompts: list[ObjectPrompt] = field(default_factory=list, repr=False)  # what found each object (by its id)
    provenance: dict[str, Any] = field(default_factory=dict, repr=False)  # version, backend, options, settings (Session.provenance)
    # more of the answer, each a result.json field: "description" (Pipeline.describe), "caption" (phrase → object)
    details: dict[str, Any] = field(default_factory=dict, repr=False)
    _rle: list[dict[int, dict]] = field(default_factory=list, repr=False)  # per frame: object id → RLE

    @property
    def has_masks(self) -> bool:
        return bool(self.objects) and bool(self._rle)

    def add_frame(self, masks: dict[int, np.ndarray]) -> None:
        self._rle.append({i: encode_rle(m) for i, m in masks.items()})

    def masks(self, frame: int) -> dict[int, np.ndarray]:
        """Object id → bool mask on one frame (decoded now; nothing else is held decoded)."""
        if not self._rle:
            return {}
        return {i: decode_rle(r) for i, r in self._rle[frame].items()}

    def iter_masks(self) -> Iterator[tuple[int, dict[int, np.ndarray]]]:
        for frame in range(len(self._rle)):
            yield frame, self.masks(frame)

    def area(self, object_id: int, frame: int) -> int:
        from pycocotools import mask as mask_utils

        rle = self._rle[frame].get(object_id)
        return 0 if rle is None else int(mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode()}))

    def overlay(self, frame: int):
        """The frame with its masks drawn (a PIL image)."""
        width, height = self.video.size
        return draw_overlay(self.video.frame(frame), label_map(self.masks(frame), (height, width)))

    def save(self, out: Path | str, overwrite: bool = False, overlay: bool = True, meta: dict | None = None) -> Path:
        """Write masks/, result.json and overlay.mp4 as `rvos segment` does (`meta`: more for result.json).
        `overwrite` replaces only an earlier output of ours; any other non-empty folder raises UserError."""
        from agent.writers.output import SegmentationWriter

        with SegmentationWriter(out, self.video, self.question, overwrite=overwrite, overlay=overlay) as writer:
            return self.write(writer, meta)

    def write(self, writer, meta: dict | None = None) -> Path:
        """Every frame into an open `SegmentationWriter`, then result.json; the folder moves into place."""
        for index, image in self.video.frames():
            writer.write(FrameMasks(index, self.masks(index), image=image))
        meta = {
            "input": str(self.video.path) if self.video.path else "in-memory",
            "instruction": self.question or None, "answer": self.answer, "mode": self.mode,  # None: prompts only
            "num_frames": len(self.video), "frame_size": list(self.video.size), "fps": self.video.fps, "keyframes": self.keyframes,
            "objects": [{"id": i, "produced_by": d} for i, d in sorted(self.objects.items())],
            "trace": self._trace_record(writer.tmp),
            **self.details,
            **self.provenance,
        } | (meta or {})
        return writer.finish(meta)

    def _trace_record(self, folder: Path) -> list[dict]:
        """The trace for result.json: a planner's calls with their arguments and results, and the
        images it was sent as `trace/NN-kind-K.jpg` beside it."""
        record = []
        for n, step in enumerate(self.trace):
            entry = {"step": step.kind, "text": step.text} | {k: step.detail[k] for k in ("tool", "arguments", "result") if k in step.detail}
            for k, image in enumerate(step.detail.get("images") or []):
                name = f"trace/{n:02d}-{step.kind}-{k}.jpg"
                (folder / "trace").mkdir(exist_ok=True)
                image.convert("RGB").save(folder / name, quality=85)
                entry.setdefault("images", []).append(name)
            record.append(entry)
        return record

    def __str__(self) -> str:
        objects = ", ".join(f"#{i} {d}" for i, d in sorted(self.objects.items())) or "none"
        return f"{self.answer}\n(objects: {objects}; mode: {self.mode})"

    def show(self, frames: int = 4, clip: bool = True):
        """In a notebook: keyframes with overlays, and a small playable clip."""
        import matplotlib.pyplot as plt
        from IPython.display import HTML, display

        chosen = np.linspace(0, len(self.video) - 1, min(frames, len(self.video))).round().astype(int)
        figure, axes = plt.subplots(1, len(chosen), figsize=(4 * len(chosen), 3), squeeze=False)
        for axis, frame in zip(axes[0], chosen):
            axis.imshow(self.overlay(int(frame)))
            axis.set_title(f"frame {frame}")
            axis.axis("off")
        figure.suptitle(self.answer[:120])
        plt.show()
        if clip:
            with tempfile.TemporaryDirectory() as tmp:
                path = self.save(Path(tmp) / "reply")
                data = base64.b64encode((path / "overlay.mp4").read_bytes()).decode()
            display(HTML(f'<video controls loop width="480" src="data:video/mp4;base64,{data}"></video>'))
