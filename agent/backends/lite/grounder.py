"""Rule-based grounding: detections on keyframes, linked into candidates, scored against the words.

Each candidate gets a base score (detector confidence × how many keyframes it is seen on ×
how well the noun fits the class; a detection counts less where the detector is surer the same box is
something else), multiplied by one factor in [0.5, 1.5] per attribute the instruction names: colour (the
mask's mean affinity to the colour, or its best quarter's for a part's colour, relative to the best
candidate's), position and size (rank among the candidates), motion (displacement across the keyframes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from agent.backends.lite.classifier import ImageNetClassifier
from agent.backends.lite.detector import CenterNetDetector, Detection
from agent.backends.lite.regions import box_iou, colour_affinity
from agent.backends.lite.segmenter import MiniSam
from agent.backends.lite.text import VOCABULARY, ClassMatcher, Companion, Query, parse
from agent.backends.lite.answers import grounding_of, kind_of, read_as
from agent.grounder.protocol import Grounding, Turn, Verdict

LINK_DISTANCE = 0.3  # of the frame diagonal: farthest a candidate moves between two keyframes
LINK_SCALE = 4.0  # most a candidate's box area changes between two keyframes
COLOUR_CHECKS = 4  # colour needs a mask: only the best candidates by detection are checked
NAME_CHECKS = 12  # the classifier names this many candidates (the best by detection), ~60 ms each
FULL_NAME = 0.5  # classifier probability on the noun's classes that counts as a full match
NAME_MIN = 0.05  # below this on every candidate, the classifier sees no such thing
PART_SHARE = 0.25  # a colour the words give a part of the object is measured on the mask's quarter that has it most
SAME_BOX_IOU = 0.6  # two detections of different classes overlapping this much are one thing under two names
COMPANION_TOUCH = 0.3  # a companion's box shares this much of the smaller box with the object's, on average over the
# object's keyframes: "and his bike", "its rider", "on a horse" are segmented with the object when touching it so


@dataclass
class Candidate:
    detections: dict[int, Detection] = field(default_factory=dict)  # keyframe index → detection
    score: float = 0.0
    reasons: list[str] = field(default_factory=list)
    named: float = 0.0  # the classifier's probability that it is what the noun names

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
    """Detections linked across keyframes: on each keyframe an optimal assignment to the candidates by
    centre distance and change of size, gated (an object neither jumps across the frame nor changes its
    area more than LINK_SCALE× between keyframes); what is left starts a candidate of its own."""
    from scipy.optimize import linear_sum_assignment

    candidates: list[Candidate] = []
    step_of = {frame: step for step, frame in enumerate(sorted(per_frame))}
    for frame, step in step_of.items():
        found = per_frame[frame]
        cost = np.full((len(candidates), len(found)), np.inf)
        for i, candidate in enumerate(candidates):
            last = candidate.detections[max(candidate.detections)]
            # a keyframe the detector missed it on lets it move as far again (a fast ball missed once)
            reach = LINK_DISTANCE * (step - step_of[max(candidate.detections)])
            for j, detection in enumerate(found):
                distance = np.hypot(detection.center[0] - last.center[0], detection.center[1] - last.center[1]) / diagonal
                scale = abs(np.log(max(detection.area, 1.0) / max(last.area, 1.0)))
                if distance < reach and scale < np.log(LINK_SCALE):
                    cost[i, j] = distance / reach + scale / np.log(LINK_SCALE)
        linked = set()
        if candidates and found:
            rows, columns = linear_sum_assignment(np.where(np.isfinite(cost), cost, 1e6))
            for i, j in zip(rows, columns):
                if np.isfinite(cost[i, j]):
                    candidates[i].detections[frame] = found[j]
                    linked.add(j)
        candidates += [Candidate({frame: d}) for j, d in enumerate(found) if j not in linked]
    return candidates


def touching(candidate: Candidate, other: Candidate) -> float:
    """How much `other` is with `candidate`: on each of the candidate's keyframes, the share of the smaller of
    their boxes that lies in both (0 where `other` is not seen), averaged."""
    shares = []
    for frame, detection in candidate.detections.items():
        companion = other.detections.get(frame)
        if companion is None:
            shares.append(0.0)
            continue
        a, b = detection.box, companion.box
        inside = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        shares.append(inside / max(min(detection.area, companion.area), 1.0))
    return float(np.mean(shares)) if shares else 0.0


def named_surely(detection: Detection, found: Sequence[Detection]) -> float:
    """The detection's score, discounted where the detector is surer that the same box is something else: times
    its score over the surest other class's on a box that overlaps it (IoU ≥ SAME_BOX_IOU). A red scooter
    called "person" at 0.12 and "motorcycle" at 0.59 is a motorcycle (× 0.2); a rider on a scooter, whose boxes
    overlap as much but who is about as sure as the scooter, loses little."""
    rival = max((d.score for d in found if d.class_index != detection.class_index and box_iou(d.box, detection.box) >= SAME_BOX_IOU),
                default=0.0)
    return detection.score * min(1.0, detection.score / rival) if rival > 0 else detection.score


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


def _rank_factor(values: list[float], index: int, larger_is_better: bool) -> float:
    if len(values) < 2:
        return 1.0
    order = sorted(range(len(values)), key=lambda i: values[i], reverse=larger_is_better)
    return 1.5 - order.index(index) / (len(values) - 1)


class LiteGrounder:
    thread_safe = True  # no state of a call on it (minisam's memo is per thread, the text model's behind a lock)

    def __init__(self, detector: CenterNetDetector, segmenter: MiniSam, matcher: ClassMatcher, classifier: ImageNetClassifier | None = None,
                 min_score: float = 0.1):
        self.detector = detector
        self.segmenter = segmenter
        self.matcher = matcher
        self.classifier = classifier
        self.min_score = min_score

    def _attribute_factors(self, query: Query, candidates: list[Candidate], keyframes, size) -> None:
        width, height = size
        diagonal = float(np.hypot(width, height))
        firsts = [c.first for c in candidates]
        checked = sorted(range(len(candidates)), key=lambda i: -candidates[i].score)[:COLOUR_CHECKS]
        affinities: dict[str, dict[int, float]] = {colour: {} for colour in query.colours}
        for n in checked if query.colours else []:
            frame = min(candidates[n].detections)  # minisam keeps its recent keyframes' embeddings
            mask = self.segmenter.segment(self.segmenter.embed(keyframes[frame]), box=candidates[n].detections[frame].box).mask
            for colour in query.colours:
                share = PART_SHARE if colour in query.part_colours else 1.0
                affinities[colour][n] = colour_affinity(keyframes[frame], mask, colour, share)
        for n, candidate in enumerate(candidates):
            factor = 1.0
            if query.colours and n not in checked:
                factor *= 0.5 ** len(query.colours)
            elif query.colours:
                for colour in query.colours:  # relative to the best checked candidate: a measure, not a threshold
                    best = max(affinities[colour].values())
                    factor *= 0.5 + affinities[colour][n] / best if best > 0 else 1.0
                    candidate.reasons.append(f"{colour} {affinities[colour][n]:.2f}")
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

    def _linked(self, query: Query, keyframes: Mapping[int, Image.Image], any_class: bool = False):
        """(candidates, the query's detections per keyframe, every detection per keyframe): the query's class
        (or, for a noun the detector has no class for, every class) on every keyframe, linked into candidates
        with their base scores; named by the classifier when the noun names ImageNet classes."""
        size = next(iter(keyframes.values())).size
        any_class = any_class or query.imagenet_first
        detected = {t: self.detector.detect(image, self.min_score) for t, image in keyframes.items()}
        per_frame = {t: [d for d in found if any_class or d.class_index == query.class_index] for t, found in detected.items()}
        classes = sorted({d.class_index for found in per_frame.values() for d in found})
        candidates = [c for k in classes  # linked within a class: a person is not the car that was there before
                      for c in link({t: [d for d in found if d.class_index == k] for t, found in per_frame.items()}, float(np.hypot(*size)))]
        for candidate in candidates:
            scores = [named_surely(d, detected[t]) for t, d in candidate.detections.items()]
            candidate.score = float(np.mean(scores)) * np.sqrt(len(scores) / len(keyframes)) * (1.0 if any_class else query.class_similarity)
        if candidates and query.imagenet and self.classifier is not None:
            self._name(query, candidates, keyframes)
        return candidates, per_frame, detected

    @staticmethod
    def _companions(query: Query, candidates: list[Candidate], detected: Mapping[int, list[Detection]], size) -> list[list[tuple]]:
        """Per thing the words put with the object ("and his bike", "its rider", "on a horse") that the detector
        has a class for: its candidates that touch each object candidate (COMPANION_TOUCH), as
        (touch × detection score, companion candidate, the words' companion, touch), best first, one list per object candidate."""
        near: list[list[tuple[float, Candidate]]] = [[] for _ in candidates]
        for companion in query.companions:
            if companion.class_index is None:
                continue
            own = {t: [d for d in found if d.class_index == companion.class_index] for t, found in detected.items()}
            for other in link(own, float(np.hypot(*size))):
                other.score = float(np.mean([d.score for d in other.detections.values()])) * companion.class_similarity
                for n, candidate in enumerate(candidates):
                    if any(d is e for d in candidate.detections.values() for e in other.detections.values()):
                        continue  # the candidate itself ("a man and his son": a person, not the same one)
                    touch = touching(candidate, other)
                    if touch >= COMPANION_TOUCH:
                        near[n].append((touch * other.score, other, companion, touch))
        return [sorted(found, key=lambda item: -item[0]) for found in near]

    @staticmethod
    def _weigh_companions(candidates: list[Candidate], near) -> None:
        """The words say it is with something ("the man … and the scooter he rides"): a factor in [0.5, 1.5]
        by how surely such a thing touches each candidate, relative to the best (a pedestrian beside parked
        scooters loses to the rider on one)."""
        evidence = [found[0][0] if found else 0.0 for found in near]
        best = max(evidence, default=0.0)
        if best > 0:
            for candidate, value in zip(candidates, evidence):
                candidate.score *= 0.5 + value / best

    @staticmethod
    def _chosen_companions(query: Query, found) -> list[tuple[Companion, Candidate]]:
        """The companions of a chosen candidate: per companion phrase, as many as the words say ("the two
        people"), each detection used once."""
        chosen, used = [], set()
        for companion in query.companions:
            mine = [(other, touch) for _, other, owner, touch in found if owner is companion and id(other) not in used]
            for other, touch in mine[: companion.phrase.count or 1]:
                other.reasons = [f"with it {touch:.2f}"]
                chosen.append((companion, other))
                used.add(id(other))
        return chosen

    def _name(self, query: Query, candidates: list[Candidate], keyframes: Mapping[int, Image.Image]) -> None:
        """Weigh each candidate by the classifier's probability that it is what the noun names (its box
        crop on the keyframe where it was detected best); the detector's class alone can't tell a flamingo
        from another bird, or name a kangaroo at all."""
        order = sorted(range(len(candidates)), key=lambda i: -candidates[i].score)[:NAME_CHECKS]
        crops = []
        for n in order:
            frame, detection = max(candidates[n].detections.items(), key=lambda item: item[1].score)
            crops.append(self.classifier.crop(keyframes[frame], detection.box))
        named = dict(zip(order, self.classifier.probabilities(crops)[:, query.imagenet].sum(1)))
        floor = 0.25 if query.imagenet_first else 0.5  # the classifier is all there is to go on, or a refinement
        for n, candidate in enumerate(candidates):
            probability = candidate.named = float(named.get(n, 0.0))
            candidate.score *= floor + min(1.0, probability / FULL_NAME) * (1.5 - floor)
            if n in named:
                candidate.reasons.append(f"{query.imagenet_name} {probability:.2f}")

    @staticmethod
    def _salient(candidates: list[Candidate], weight: float, size: tuple[int, int], centre_scale: float | None) -> None:
        """Prefer big objects (what people point at): a factor from 1 − weight/2 (tiny) to 1 + weight/2
        (the biggest candidate), by mean box area. With `centre_scale`, also objects near the middle of
        the frame (what the camera is pointed at, and follows): exp(−d / centre_scale), d the centre's
        mean distance from the frame's middle over the keyframes, as a fraction of the diagonal."""
        areas = [float(np.mean([d.area for d in c.detections.values()])) for c in candidates]
        width, height = size
        diagonal = float(np.hypot(width, height))
        for candidate, area in zip(candidates, areas):
            candidate.score *= 1 - weight / 2 + weight * area / max(max(areas), 1e-6)
            if centre_scale:
                off = np.mean([np.hypot(d.center[0] - width / 2, d.center[1] - height / 2) for d in candidate.detections.values()]) / diagonal
                candidate.score *= float(np.exp(-off / centre_scale))

    def _ranked(self, query: Query, keyframes: Mapping[int, Image.Image], question: str | None = None):
        """(candidates best first, detections per keyframe, how the noun was read, a note for the answer),
        or a Grounding that says why there is nothing to rank."""
        fallback = query.class_index is None and not query.imagenet
        if fallback and (query.noun is None or question is not None):
            return self._unknown(query)
        candidates, per_frame, detected = self._linked(query, keyframes, any_class=fallback)
        noun, note = read_as(query), ""
        if fallback:
            noun = ""
            note = f'I don\'t know what "{query.noun}" is, so I took the most salient object that fits the rest of the words: '
        seen = candidates and not (query.imagenet_first and self.classifier is not None and max(c.named for c in candidates) < NAME_MIN)
        if not seen:
            return Grounding(f"I found no {kind_of(query)}{noun} in this video, so nothing is segmented.", extras={"query": query})
        if question == "count":
            return candidates, per_frame, detected, noun, note
        size = next(iter(keyframes.values())).size
        # the middle says nothing when the words place the object, or ask for several
        centred = None if query.positions or query.plural else VOCABULARY["centre_scale"]
        self._salient(candidates, VOCABULARY["salience_weight"] * (2 if fallback else 1), size, centred)
        if question == "activity":
            query.motion = query.motion or "moving"
        self._attribute_factors(query, candidates, keyframes, size)
        candidates.sort(key=lambda c: -c.score)
        return candidates, per_frame, detected, noun, note

    def ground(self, keyframes: Mapping[int, Image.Image], instruction: str, history: Sequence[Turn] = ()) -> Grounding:
        query = self._follow_up(parse(instruction, self.matcher), history)
        lowered = instruction.lower().strip()
        question = next((kind for kind, starts in VOCABULARY["questions"].items() if lowered.startswith(tuple(starts))), None)
        ranked = self._ranked(query, keyframes, question)
        if isinstance(ranked, Grounding):
            return ranked
        candidates, per_frame, detected, noun, note = ranked
        kind = kind_of(query)
        if question == "count":
            count = count_objects(per_frame)
            return Grounding(f"I see {count} {kind}{'s' if count != 1 else ''}{noun} in this video.",
                             extras={"query": query, "candidates": candidates})
        if question == "activity":
            _, _, speed = candidates[0].displacement(float(np.hypot(*next(iter(keyframes.values())).size)))
            state = "moving" if speed > 0.002 else "staying mostly still"
            return Grounding(f"The {kind} is {state} ({speed * 1000:.1f}‰ of the frame diagonal per frame).",
                             extras={"query": query, "candidates": candidates})
        near = self._companions(query, candidates, detected, next(iter(keyframes.values())).size)
        if query.companions:
            self._weigh_companions(candidates, near)
            order = sorted(range(len(candidates)), key=lambda i: -candidates[i].score)
            candidates, near = [candidates[i] for i in order], [near[i] for i in order]
        chosen = [c for c in candidates if c.score >= 0.5 * candidates[0].score] if query.plural else candidates[:1]
        companions = self._chosen_companions(query, near[0]) if near and not query.plural else []
        return grounding_of(query, chosen, candidates, noun, note, companions)

    def candidates(self, keyframes: Mapping[int, Image.Image], phrase: str, history: Sequence[Turn] = (), limit: int = 5) -> Grounding:
        """Every candidate for a short phrase (best first, at most `limit`), each one object: what an
        agent's planner looks at before it chooses."""
        query = self._follow_up(parse(phrase, self.matcher), history)
        ranked = self._ranked(query, keyframes)
        if isinstance(ranked, Grounding):
            return ranked
        candidates, _, _, noun, note = ranked
        return grounding_of(query, candidates[:limit], candidates, noun, note)

    def describe_object(self, views, facts, question: str | None = None):
        """Words about a tracked object from what lite measures (describe.py)."""
        from agent.backends.lite.describe import describe_object

        return describe_object(self, views, facts, question)

    def caption(self, keyframes: Mapping[int, Image.Image]) -> Grounding:
        """The things lite sees clearly, each one object, in one sentence (describe.py)."""
        from agent.backends.lite.describe import caption

        return caption(self, keyframes)

    def verify(self, masked_keyframes: Mapping[int, Image.Image], instruction: str, grounding: Grounding) -> Verdict:
        """Rule-based check: the chosen candidates must be confident enough and their masks not empty."""
        candidates = grounding.extras.get("candidates") or []
        if not grounding.prompts or not candidates:
            return Verdict(False, "no object was chosen")
        best = max(c.score for c in candidates)
        if best < VOCABULARY["verify_min_score"]:
            return Verdict(False, f"the best candidate scored only {best:.2f}")
        return Verdict(True, f"yes: best candidate scored {best:.2f}")
