"""The lite backend beyond COCO's 80 classes: the ImageNet classifier, nouns matched to both vocabularies,
the colour measure on real frames, and the fallback when nothing names the noun."""

import pytest
from PIL import Image

from agent.backends.lite import weights
from agent.backends.lite.classifier import ImageNetClassifier
from agent.backends.lite.regions import colour_affinity
from agent.backends.lite.text import parse
from agent.backends.lite.tracker import box_iou, box_of
from agent.video.keyframes import select_keyframes
from agent.video.source import VideoSource
from agent.writers import read_palette_png

@pytest.fixture(scope="module")
def grounder(lite_assistant):
    return lite_assistant.backend.grounder


def frame_and_truth(root, video, frame="00000"):
    image = Image.open(root / "JPEGImages" / video / f"{frame}.jpg").convert("RGB")
    return image, read_palette_png(root / "Annotations" / video / f"{frame}.png") > 0


def test_the_classifier_loads_and_names_real_crops(refdavis):
    classifier = ImageNetClassifier(weights.lite_dir() / "classifier.safetensors")
    image, truth = frame_and_truth(refdavis, "blackswan")
    assert classifier.top(classifier.crop(image, box_of(truth), truth))[0][0] == "black swan"
    image, truth = frame_and_truth(refdavis, "libby")
    probabilities = classifier.probabilities([classifier.crop(image, box_of(truth), truth)])[0]
    assert probabilities[151:269].sum() > 0.5, "a dog breed"  # ImageNet's dogs are 151–268


@pytest.mark.parametrize("text, first, name, contains", [
    ("a kangaroo hopping", True, "marsupial", 104),  # COCO has nothing for it (MiniLM's closest: banana)
    ("the lion on the rock", True, "lion", 291),
    ("a tortoise", True, "turtle", 37),
    ("the pink flamingo in the water", False, "flamingo", 130),  # COCO's bird, refined by ImageNet's flamingo
    ("a puppy running", False, "dog", 207),  # the breeds are "dog"
    ("a red jeep driving", False, "jeep", 609),
])
def test_nouns_are_matched_beyond_coco(grounder, text, first, name, contains):
    query = parse(text, grounder.matcher)
    assert query.imagenet_first is first and query.imagenet_name == name and contains in query.imagenet


@pytest.mark.parametrize("text, plural", [
    ("track them", True), ("where are they going?", True), ("the swan and its mate: segment them", True),
    ("both swans", True), ("the swan", False), ("the black swan in the water", False),
])
def test_them_and_they_make_a_query_plural(grounder, text, plural):
    assert parse(text, grounder.matcher).plural is plural


def test_colour_on_real_frames(refdavis, davis16):
    """The measure ranks colours as a person would on the objects themselves (DAVIS ground truth)."""
    def affinities(root, video, frame="00000"):
        image, truth = frame_and_truth(root, video, frame)
        return {c: colour_affinity(image, truth, c) for c in ("red", "pink", "white", "black", "gray", "brown", "blue", "green")}

    swan = affinities(refdavis, "blackswan")
    assert swan["black"] == max(swan.values())
    boat = affinities(davis16, "boat")  # a white boat: "red" is wrong, as the measure says
    assert boat["white"] > 2 * boat["red"] and boat["red"] < 0.05
    bear = affinities(davis16, "bear")
    assert bear["brown"] > max(bear["pink"], bear["blue"], bear["green"], bear["white"])
    flamingo = affinities(davis16, "flamingo")  # pale pink: little saturation, still more pink than blue or green
    assert flamingo["pink"] > 3 * max(flamingo["blue"], flamingo["green"])
    image, truth = frame_and_truth(davis16, "dance-jump")
    assert colour_affinity(image, truth, "pink") > 2 * colour_affinity(image, ~truth, "pink"), "her dress against the rest"


def _keyframes(root, video):
    source = VideoSource.open(root / "JPEGImages" / video)
    return source.read_many(select_keyframes(len(source), 5, "uniform"))


def test_an_unknown_noun_falls_back_to_the_most_salient_object(grounder, refdavis):
    keyframes = _keyframes(refdavis, "car-shadow")
    grounding = grounder.ground(keyframes, "the zorblax crossing a signal")
    assert grounding.answer.startswith('I don\'t know what "zorblax" is') and grounding.prompts
    first = min(p.frame_index for p in grounding.prompts)
    prompt = next(p for p in grounding.prompts if p.frame_index == first)
    assert box_iou(prompt.box, box_of(read_palette_png(refdavis / "Annotations" / "car-shadow" / f"{first:05d}.png") > 0)) > 0.5


def test_no_x_only_when_neither_model_sees_one(grounder, refdavis):
    keyframes = _keyframes(refdavis, "blackswan")
    assert grounder.ground(keyframes, "the tortoise").answer.startswith("I found no turtle")
    grounding = grounder.ground(keyframes, "the black swan")
    assert grounding.prompts and "bird" in grounding.extras["details"]  # the trace says how the noun was read


def test_the_girl_in_the_pink_dress_is_the_one_in_front(grounder, davis16):
    """Colour and size decide between candidates of one kind (dance-jump: a girl in front, a crowd behind)."""
    keyframes = _keyframes(davis16, "dance-jump")
    grounding = grounder.ground(keyframes, "the girl in the pink dress dancing")
    first = min(p.frame_index for p in grounding.prompts)
    prompt = next(p for p in grounding.prompts if p.frame_index == first)
    assert box_iou(prompt.box, box_of(read_palette_png(davis16 / "Annotations" / "dance-jump" / f"{first:05d}.png") > 0)) > 0.5


def test_the_pink_flamingo_is_the_one_the_camera_follows(grounder, davis16):
    """Two pale pink flamingos; the one behind is detected more surely and on more keyframes. The camera
    is pointed at the one in front: the centre prior picks it (it chose the one behind before)."""
    keyframes = _keyframes(davis16, "flamingo")
    grounding = grounder.ground(keyframes, "the pink flamingo in the water")
    prompt = min(grounding.prompts, key=lambda p: p.frame_index)
    x0, y0, x1, y1 = (int(round(v)) for v in prompt.box)  # the detector's box holds the body, not the legs in the water
    truth = read_palette_png(davis16 / "Annotations" / "flamingo" / f"{prompt.frame_index:05d}.png") > 0
    assert truth[y0:y1, x0:x1].mean() > 0.3  # 0.41; the box of the one behind: 0.09
