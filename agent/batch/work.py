"""One item of `rvos batch`: segmented into `DIR/<item>/` by `rvos segment`'s own pipeline, its failure
returned as a record (one bad video never stops the batch); and whether an earlier run already finished it."""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.batch.manifest import BatchItem
from agent.errors import UserError


@dataclass
class BatchJob:
    out: str
    backend: str
    model: str | None = None
    device: str = "auto"
    backend_options: dict[str, Any] = field(default_factory=dict)
    overlay: bool = True

    def load_backend(self):
        from agent.backends import load_backend

        return load_backend(self.backend, self.model, self.device, **self.backend_options)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, UserError) else f"{type(exc).__name__}: {text}"


def is_finished(folder: Path, item: BatchItem) -> bool:
    """Whether `folder` holds `rvos segment`'s whole output for this item's request (another request's is redone)."""
    try:
        result = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(result, dict) and isinstance(result.get("frames"), list) and len(result["frames"]) == result.get("num_frames")
            and result.get("input") == item.video and result.get("instruction") == item.instruction)


def run_item(backend, item: BatchItem, out: Path, overlay: bool = True, progress: bool = True) -> dict:
    """Segment one item into `out/<item.name>` with `rvos segment`'s pipeline; a failure is returned, not raised."""
    from agent.pipeline import segment
    from agent.video.source import VideoSource
    from agent.visual_syntax import command_line_prompts

    start = time.perf_counter()
    folder = out / item.name
    try:
        source = VideoSource.open(item.video)
        prompts = command_line_prompts(len(source), source.size, item.points, item.boxes, item.masks)
        # an earlier output of ours for another request is replaced; the writer refuses anything else
        run = segment(source, item.instruction, backend, folder, overwrite=folder.exists(), overlay=overlay,
                      prompts=prompts, progress=progress)
    except Exception as exc:  # one bad video never stops the batch
        failure = {"status": "failed", "error": one_line(exc)}
        if not isinstance(exc, UserError):
            failure["traceback"] = traceback.format_exc()
        return failure
    return {"status": "done", "frames": len(source), "objects": len(run.reply.objects), "answer": run.answer,
            "seconds": round(time.perf_counter() - start, 3)}
