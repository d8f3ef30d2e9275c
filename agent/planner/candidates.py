"""Candidates for a phrase, each tracked through the whole video (a masklet) before anything is chosen:
what a planner reads to settle motion and relations from tracks rather than from one frame."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

from agent.grounder.protocol import Grounding
from agent.tracker.protocol import FrameMasks
from agent.writers.outlines import draw_outlines, tile
from agent.masks import decode_rle, encode_rle

STILL = 0.002  # net motion below this fraction of the frame diagonal per frame counts as still


@dataclass
class Masklet:
    """One candidate's track: where it is visible, its box, area and centre on each of those frames."""

    number: int
    label: str
    boxes: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)  # frame → x0, y0, x1, y1
    areas: dict[int, float] = field(default_factory=dict)  # frame → fraction of the frame
    centres: dict[int, tuple[float, float]] = field(default_factory=dict)

    @property
    def frames(self) -> list[int]:
        return sorted(self.boxes)

    def motion(self, diagonal: float) -> tuple[float, str]:
        """Mean speed of the centre (fraction of the diagonal per frame) and the net direction."""
        frames = self.frames
        if len(frames) < 2:
            return 0.0, "still"
        steps = [np.hypot(*np.subtract(self.centres[b], self.centres[a])) / (b - a) for a, b in zip(frames, frames[1:])]
        dx, dy = np.subtract(self.centres[frames[-1]], self.centres[frames[0]]) / ((frames[-1] - frames[0]) * diagonal)
        if np.hypot(dx, dy) < STILL:
            return float(np.mean(steps)) / diagonal, "in place"
        horizontal = "right" if dx > 0 else "left"
        vertical = "down" if dy > 0 else "up"
        direction = horizontal if abs(dx) > 2 * abs(dy) else vertical if abs(dy) > 2 * abs(dx) else f"{vertical}-{horizontal}"
        return float(np.mean(steps)) / diagonal, direction


def _spans(frames: Sequence[int]) -> str:
    """[0, 1, 2, 5, 6] → "0–2, 5–6"."""
    spans, start = [], None
    for n, frame in enumerate(frames):
        if start is None:
            start = frame
        if n + 1 == len(frames) or frames[n + 1] != frame + 1:
            spans.append(f"{start}–{frame}" if frame != start else str(start))
            start = None
    return ", ".join(spans) or "none"


@dataclass
class Candidates:
    """What `Session.find(phrase)` returns: the grounder's candidates with their tracks (as RLE)."""

    phrase: str
    grounding: Grounding
    size: tuple[int, int]  # frame width, height
    masklets: dict[int, Masklet] = field(default_factory=dict)
    rle: list[dict[int, dict]] = field(default_factory=list)  # per frame: candidate number → RLE

    @property
    def numbers(self) -> list[int]:
        return sorted(self.masklets)

    def masks(self, frame: int, numbers: Iterable[int] | None = None) -> dict[int, np.ndarray]:
        wanted = set(self.numbers if numbers is None else numbers)
        return {n: decode_rle(r) for n, r in self.rle[frame].items() if n in wanted} if self.rle else {}

    def renumbered(self, offset: int) -> Candidates:
        """The same candidates numbered from `offset` + 1 (numbers stay unique across several finds)."""
        if not offset:
            return self
        grounding = replace(self.grounding, prompts=[replace(p, object_id=p.object_id + offset) for p in self.grounding.prompts],
                            objects={n + offset: d for n, d in self.grounding.objects.items()})
        masklets = {n + offset: replace(m, number=n + offset) for n, m in self.masklets.items()}
        rle = [{n + offset: r for n, r in frame.items()} for frame in self.rle]
        return Candidates(self.phrase, grounding, self.size, masklets, rle)

    def table(self) -> str:
        """One line per candidate: label, score, box and area where first seen, visible frames, motion."""
        if not self.masklets:
            return "no candidates"
        diagonal = float(np.hypot(*self.size))
        lines = []
        for number in self.numbers:
            masklet = self.masklets[number]
            if not masklet.frames:
                lines.append(f"#{number} {masklet.label}: never visible after tracking")
                continue
            first = masklet.frames[0]
            speed, direction = masklet.motion(diagonal)
            area = np.mean(list(masklet.areas.values())) * 100
            lines.append(f"#{number} {masklet.label}: box {list(masklet.boxes[first])} on frame {first}, mean area {area:.1f}% of the frame, "
                         f"visible on frames {_spans(masklet.frames)} ({len(masklet.frames)} of {len(self.rle)}), "
                         f"moves {direction} at {speed * 1000:.1f}‰ of the diagonal per frame")
        return "\n".join(lines)

    def image(self, keyframes: Mapping[int, Image.Image], width: int = 448) -> Image.Image:
        """The keyframes (at most four) with every candidate's numbered outline."""
        chosen = sorted(keyframes)
        if len(chosen) > 4:
            chosen = [chosen[round(i)] for i in np.linspace(0, len(chosen) - 1, 4)]
        return tile([draw_outlines(keyframes[t], self.masks(t), width, caption=f"frame {t}") for t in chosen])

    def crops(self, video, numbers: Sequence[int], frames: Sequence[int] | None = None, width: int = 448) -> tuple[Image.Image, list[int]]:
        """Those candidates cropped to where they are (padded), with outlines, on up to four frames."""
        visible = sorted({f for n in numbers for f in self.masklets[n].frames})
        if frames:
            visible = [f for f in frames if 0 <= f < len(self.rle)]
        elif len(visible) > 4:
            visible = [visible[round(i)] for i in np.linspace(0, len(visible) - 1, 4)]
        if not visible:
            return Image.new("RGB", (width, width // 2)), []
        boxes = [self.masklets[n].boxes[f] for n in numbers for f in visible if f in self.masklets[n].boxes]
        boxes = boxes or [b for n in numbers for b in self.masklets[n].boxes.values()] or [(0, 0, *self.size)]  # not there: where they are
        x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
        x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
        pad = 0.15 * max(x1 - x0, y1 - y0, 16)
        w, h = self.size
        region = (int(max(0, x0 - pad)), int(max(0, y0 - pad)), int(min(w, x1 + pad)), int(min(h, y1 + pad)))
        shots = []
        for f in visible:
            masks = {n: m[region[1]:region[3], region[0]:region[2]] for n, m in self.masks(f, numbers).items()}
            shots.append(draw_outlines(video.frame(f).crop(region), masks, width // 2, caption=f"frame {f}"))
        return tile(shots), visible


def collect(phrase: str, grounding: Grounding, tracked: Iterable[FrameMasks], size: tuple[int, int]) -> Candidates:
    """Track statistics and RLE of every candidate, from the tracker's frames as they stream."""
    width, height = size
    candidates = Candidates(phrase, grounding, size)
    concepts = {p.object_id: p for p in grounding.prompts if p.concept}  # each becomes the instances found for it
    for number in grounding.object_ids:
        if number not in concepts:
            candidates.masklets[number] = Masklet(number, grounding.objects[number])
    found: dict[int, int] = {}  # instances a tracker found for a concept prompt ("every car": SAM 3) → that prompt's id
    for frame in tracked:
        candidates.rle.append({n: encode_rle(m) for n, m in frame.masks.items()})
        for number, concept in frame.found.items():
            if number not in candidates.masklets:
                found[number] = concept
                candidates.masklets[number] = Masklet(number, grounding.objects.get(concept) or concepts[concept].label or "")
        for number, mask in frame.masks.items():
            ys, xs = np.nonzero(mask)
            if len(xs) == 0:
                continue
            masklet = candidates.masklets[number]
            masklet.boxes[frame.frame_index] = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
            masklet.areas[frame.frame_index] = len(xs) / (width * height)
            masklet.centres[frame.frame_index] = (float(xs.mean()), float(ys.mean()))
    if concepts:  # the candidates are the instances, each with the prompt that found it (what `choose` tracks by)
        prompts = [p for p in grounding.prompts if not p.concept] + [replace(concepts[c], object_id=i) for i, c in sorted(found.items())]
        objects = {i: d for i, d in grounding.objects.items() if i not in concepts} | {i: candidates.masklets[i].label for i in found}
        candidates.grounding = replace(grounding, prompts=prompts, objects=objects)
    return candidates
