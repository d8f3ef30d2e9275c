"""The main job: video in → keyframes → grounder → tracker → writers out."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from agent.backends.base import Backend
from agent.errors import UserError
from agent.grounder.protocol import Grounding, ObjectPrompt, Turn
from agent.video.keyframes import select_keyframes
from agent.video.source import VideoSource
from agent.writers.output import SegmentationWriter, check_output_folder


def check_instruction(instruction: str) -> str:
    if not isinstance(instruction, str) or not instruction.strip():
        raise UserError('the instruction is empty; say which object to segment, e.g. "the dog on the left"')
    return instruction.strip()


@dataclass
class SegmentationRun:
    out: Path
    grounding: Grounding
    keyframes: list[int]
    timings: dict[str, float] = field(default_factory=dict)


def with_visual_prompts(grounding: Grounding, prompts: Sequence[ObjectPrompt]) -> Grounding:
    """The grounder's objects plus a person's (renumbered after the grounder's ids)."""
    if not prompts:
        return grounding
    offset = max(grounding.objects, default=0)
    extra = [replace(p, object_id=p.object_id + offset) for p in prompts]
    kinds = {p.object_id: "mask" if p.mask is not None else "box" if p.box is not None else "clicks" for p in extra}
    objects = grounding.objects | {i: f"{kind} prompt" for i, kind in kinds.items()}
    answer = grounding.answer or f"Tracking {len(kinds)} object(s) from your prompts."
    return replace(grounding, answer=answer, prompts=[*grounding.prompts, *extra], objects=objects)


def segment(
    video: Any,
    instruction: str | None,
    backend: Backend,
    out: Path | str,
    *,
    overwrite: bool = False,
    overlay: bool = True,
    history: Sequence[Turn] = (),
    keyframe_indices: Sequence[int] | None = None,
    progress: bool = True,
    prompts: Sequence[ObjectPrompt] = (),
) -> SegmentationRun:
    """Segment what `instruction` refers to (and the objects a person's `prompts` mark: masks, boxes,
    clicks; the instruction may then be None) on every frame of `video` and write it to `out`."""
    if instruction is not None or not prompts:
        instruction = check_instruction(instruction)
    source = VideoSource.open(video)
    check_output_folder(Path(out), overwrite)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    indices = select_keyframes(len(source), backend.keyframe_count, backend.keyframe_strategy, keyframe_indices)
    keyframes = source.read_many(indices)
    timings["read_keyframes_s"] = time.perf_counter() - start

    start = time.perf_counter()
    grounding = backend.grounder.ground(keyframes, instruction, history) if instruction else Grounding("")
    grounding = with_visual_prompts(grounding, prompts)
    timings["ground_s"] = time.perf_counter() - start

    start = time.perf_counter()
    with SegmentationWriter(out, source, instruction or "", overwrite=overwrite, overlay=overlay) as writer:
        bar = tqdm(total=len(source), unit="frame", desc="segment", disable=not progress)
        if grounding.prompts:
            for frame in backend.tracker.track(source, grounding.prompts, keyframes):
                writer.write(frame)
                bar.update()
        else:  # nothing to track: empty masks (the overlay still shows the video)
            for index, image in source.frames():
                writer.write_empty(index, image)
                bar.update()
        bar.close()
        timings["track_and_write_s"] = time.perf_counter() - start
        meta = {
            "input": str(source.path) if source.path else "in-memory",
            "instruction": instruction,
            "answer": grounding.answer,
            # what shaped the result: rvos_agent (the version), backend, model, device, keyframe_count,
            # keyframe_strategy, the options given and every setting the backend ran with
            **backend.provenance(),
            "num_frames": len(source),
            "frame_size": list(source.size),
            "fps": source.fps,
            "keyframes": indices,
            "timings": {k: round(v, 3) for k, v in timings.items()},
            "objects": [{"id": i, "produced_by": grounding.objects[i]} for i in grounding.object_ids],
        }
        path = writer.finish(meta)
    return SegmentationRun(out=path, grounding=grounding, keyframes=indices, timings=timings)
