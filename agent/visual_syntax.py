"""Visual prompts written as text, as `rvos segment --point/--box/--mask`, chat's `/point` and `/box` and
a batch manifest take them: `X,Y[,+|-][@FRAME]`, `X0,Y0,X1,Y1[@FRAME]`, `FILE[@FRAME]`. Parsed here,
checked against the video by `agent.grounder.visual`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from agent.errors import UserError
from agent.grounder.protocol import ObjectPrompt
from agent.grounder.visual import NEGATIVE, POSITIVE, check_box, check_frame, check_mask, check_points, read_mask_file

_NUMBER = r"-?\d+(?:\.\d+)?"
_POINT = re.compile(rf"^({_NUMBER}),({_NUMBER})(?:,([+-]))?(?:@(\d+))?$")
_BOX = re.compile(rf"^({_NUMBER}),({_NUMBER}),({_NUMBER}),({_NUMBER})(?:@(\d+))?$")
_MASK = re.compile(r"^(.+?)(?:@(\d+))?$")


def parse_point(text: str) -> tuple[int, tuple[float, float], int]:
    """`X,Y[,+|-][@FRAME]` → (frame, (x, y), label)."""
    match = _POINT.match(text.replace(" ", ""))
    if not match:
        raise UserError(f"--point {text!r}: write X,Y[,+|-][@FRAME], e.g. 120,80 or 120,80,-@30")
    x, y, sign, frame = match.groups()
    return int(frame or 0), (float(x), float(y)), NEGATIVE if sign == "-" else POSITIVE


def parse_box(text: str) -> tuple[int, tuple[float, float, float, float]]:
    """`X0,Y0,X1,Y1[@FRAME]` → (frame, box)."""
    match = _BOX.match(text.replace(" ", ""))
    if not match:
        raise UserError(f"--box {text!r}: write X0,Y0,X1,Y1[@FRAME], e.g. 10,20,200,180@0")
    *box, frame = match.groups()
    return int(frame or 0), tuple(float(v) for v in box)


def parse_mask(text: str) -> tuple[int, Path]:
    """`FILE[@FRAME]` → (frame, path)."""
    path, frame = _MASK.match(text).groups()
    return int(frame or 0), Path(path)


def command_line_prompts(num_frames: int, size: tuple[int, int], points: Sequence[str] = (), boxes: Sequence[str] = (),
                         masks: Sequence[str] = (), first_id: int = 1) -> list[ObjectPrompt]:
    """`--mask`, `--box` and `--point` options as checked prompts.

    A mask file gives one object per non-zero id (the same id in two files is one object prompted
    on two frames); each box is a new object; the clicks together are one object, the box's
    object when there is exactly one box.
    """
    prompts: list[ObjectPrompt] = []
    mask_ids: dict[int, int] = {}
    for text in masks:
        frame, path = parse_mask(text)
        check_frame(frame, num_frames)
        for file_id, mask in sorted(read_mask_file(path).items()):
            object_id = mask_ids.setdefault(file_id, first_id + len(mask_ids))
            prompts.append(ObjectPrompt(object_id, frame, mask=check_mask(mask, size), source="person"))
    next_id = first_id + len(mask_ids)
    by_frame: dict[tuple[int, int], ObjectPrompt] = {}
    for text in boxes:
        frame, box = parse_box(text)
        check_frame(frame, num_frames)
        by_frame[(next_id, frame)] = ObjectPrompt(next_id, frame, box=check_box(box, size), source="person")
        next_id += 1
    clicked = next_id - 1 if len(boxes) == 1 else next_id
    for text in points:
        frame, point, label = parse_point(text)
        check_frame(frame, num_frames)
        check_points([point], [label], size)
        prompt = by_frame.setdefault((clicked, frame), ObjectPrompt(clicked, frame, source="person"))
        prompt.points = [*(prompt.points or []), point]
        prompt.point_labels = [*(prompt.point_labels or []), label]
    for prompt in by_frame.values():
        if prompt.box is None and prompt.point_labels and POSITIVE not in prompt.point_labels and prompt.mask is None:
            raise UserError(f"frame {prompt.frame_index}: only negative clicks; add a positive click (X,Y or X,Y,+) on the object")
    return prompts + list(by_frame.values())
