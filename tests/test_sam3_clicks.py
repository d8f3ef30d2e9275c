"""A person's clicks, boxes and masks on the `sam3` backend against transformers' own `Sam3TrackerVideoModel` API
(`pytest -k sam3`): the tiny random SAM 3 checkpoint of tests/test_sam3.py, loaded as the tracker model the way
the backend loads it, run the documented way (`init_video_session(video=frames)`, `add_inputs_to_inference_session`,
`model(inference_session, frame_idx)`, `propagate_in_video_iterator`, `post_process_masks`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from test_sam3 import PHRASE, sam3_models, tiny_video  # noqa: F401  (sam3_models: the fixture)

from agent.backends import load_backend
from agent.grounder.protocol import ObjectPrompt
from agent.pipeline import Pipeline, Request

RED_CLICK = [(16.0, 22.0)]  # on the red square of frame 0
BLUE_BOX = (60.0, 40.0, 80.0, 60.0)  # around the blue square of frame 0


def reference(folder, frames, inputs, start: int, reverse: bool = False, size=(72, 96)) -> dict[int, dict[int, np.ndarray]]:
    """transformers' tracker on `frames`: `inputs` = [(frame, object id, add_inputs keywords)]; frame → id → mask."""
    from transformers import Sam3TrackerVideoModel, Sam3TrackerVideoProcessor

    model = Sam3TrackerVideoModel.from_pretrained(folder).eval()
    processor = Sam3TrackerVideoProcessor.from_pretrained(folder)
    session = processor.init_video_session(video=frames, inference_device="cpu")
    out = {}
    with torch.inference_mode():
        for frame, object_id, options in inputs:  # each object's inputs, then the model on that frame
            processor.add_inputs_to_inference_session(session, frame_idx=frame, obj_ids=object_id, **options)
            model(inference_session=session, frame_idx=frame)
        for output in model.propagate_in_video_iterator(session, start_frame_idx=start, reverse=reverse):
            masks = processor.post_process_masks([output.pred_masks], original_sizes=[list(size)], binarize=True)[0]
            out[int(output.frame_idx)] = {i: masks[k, 0].numpy() for k, i in enumerate(output.object_ids)}
    return out


@pytest.fixture(scope="module")
def sam3_backend(sam3_models):  # noqa: F811
    _, folder = sam3_models["present"]
    return load_backend("sam3", str(folder), "cpu"), folder


def test_sam3_clicks_and_a_box_match_transformers_tracker(sam3_backend):
    backend, folder = sam3_backend
    prompts = (ObjectPrompt(1, 0, points=RED_CLICK, point_labels=[1], source="person"),
               ObjectPrompt(2, 0, box=BLUE_BOX, source="person"))
    reply = Pipeline(backend, tiny_video(), progress=False).run(Request(None, prompts))
    expected = reference(folder, tiny_video(), [(0, 1, {"input_points": [[[list(RED_CLICK[0])]]], "input_labels": [[[1]]]}),
                                                (0, 2, {"input_boxes": [[list(BLUE_BOX)]]})], start=0)
    assert sorted(reply.objects) == [1, 2]
    for t in range(10):
        for i in (1, 2):
            assert np.array_equal(reply.masks(t)[i], expected[t][i]), (t, i)
    assert any(expected[t][i].any() for t in range(10) for i in (1, 2)), "the random model outputs some mask"


def test_sam3_a_mask_on_a_later_frame_tracks_forward_as_transformers_and_backward_in_its_own_session(sam3_backend):
    backend, folder = sam3_backend
    mask = np.zeros((72, 96), bool)
    mask[10:34, 21:45] = True  # the red square on frame 4
    seen = []
    reply = Pipeline(backend, tiny_video(), progress=lambda *step: seen.append(step)).run(Request(None, (ObjectPrompt(1, 4, mask=mask, source="person"),)))
    assert seen == [(done, 4, "track (backwards)") for done in range(1, 5)] + [(done, 10, "track") for done in range(1, 11)]
    inputs = [(4, 1, {"input_masks": mask})]
    forward = reference(folder, tiny_video(), inputs, start=4)
    backward = reference(folder, tiny_video(), inputs, start=4, reverse=True)
    for t in range(10):
        expected = forward[t][1] if t >= 4 else backward[t][1]
        assert np.array_equal(reply.masks(t)[1], expected), t


def test_sam3_a_box_adds_an_object_next_to_the_instances_words_found(sam3_backend):
    """Words and a box in one request: the box's object has the id a person's object gets after the words' (2:
    the concept prompt is 1) and transformers' tracker's masks; the instances keep their order and masks, numbered
    around it (1, 3, 4, …)."""
    backend, folder = sam3_backend
    words = Pipeline(backend, tiny_video(), progress=False).run(Request(PHRASE, mode="direct"))
    count = len(words.objects)
    assert count >= 2
    box = ObjectPrompt(1, 0, box=BLUE_BOX, source="person")
    both = Pipeline(backend, tiny_video(), progress=False).run(Request(PHRASE, (box,), mode="direct"))
    expected = reference(folder, tiny_video(), [(0, 2, {"input_boxes": [[list(BLUE_BOX)]]})], start=0)
    assert sorted(both.objects) == list(range(1, count + 2)) and both.objects[2] == "box prompt"
    instance = {1: 1} | {k: k + 1 for k in range(2, count + 1)}
    for t in range(10):
        assert np.array_equal(both.masks(t)[2], expected[t][2]), t
        for k, ours in instance.items():
            assert np.array_equal(both.masks(t)[ours], words.masks(t)[k]), (t, k)


def test_sam3_a_sessions_click_corrects_an_instance_in_place(sam3_backend):
    """In a conversation, a click on an instance re-tracks that instance alone (the session's one path for
    corrections), with SAM 3's tracker: the clicks and the box of its current mask; the others are unchanged."""
    from agent.assistant import Assistant

    backend, folder = sam3_backend
    session = Assistant(backend).open(tiny_video(), progress=False)
    first = session.ask(PHRASE, mode="direct")
    target = min(first.objects)
    before = {t: session.objects.mask(target, t).copy() for t in range(10)}
    assert before[0].any(), "the instance is on frame 0"
    ys, xs = np.nonzero(before[0])
    click = (float(xs.mean()), float(ys.mean()))
    reply = session.add_points(0, [click], [0], object_id=target)  # "not this part"
    assert sorted(reply.objects) == sorted(first.objects)
    box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    expected = reference(folder, tiny_video(), [(0, target, {"input_points": [[[list(click)]]], "input_labels": [[[0]]],
                                                             "input_boxes": [[box]]})], start=0)
    for t in range(10):
        assert np.array_equal(session.objects.mask(target, t), expected[t][target]), t
        for other in set(first.objects) - {target}:
            assert np.array_equal(session.objects.mask(other, t), first.masks(t)[other]), (t, other)
    assert any(not np.array_equal(before[t], expected[t][target]) for t in range(10)), "the correction changed the track"


def test_sam3_tracker_for_sa2va_carries_the_seg_keyframe_masks(sam3_backend, qwen25_fixture):
    """`--backend sa2va --tracker sam3`: the [SEG] object's masks on its keyframes (Sa2VA's own, decoded without
    memory: what the plain backend gives there) become mask prompts of SAM 3's tracker, which tracks them as
    transformers' Sam3TrackerVideoModel does."""
    from PIL import Image

    from agent.errors import UserError
    from test_sa2va_fixture import load_fixture

    _, folder = sam3_backend
    with pytest.raises(UserError, match="--tracker-model is the SAM 3 checkpoint"):
        load_fixture(qwen25_fixture, tracker_model=str(folder))
    plain = load_fixture(qwen25_fixture, keyframes=2)
    combined = load_fixture(qwen25_fixture, keyframes=2, tracker="sam3", tracker_model=str(folder))
    assert combined.settings["tracker"] == "sam3" and plain.settings["tracker"] == "sam2"
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((qwen25_fixture / "inputs").glob("*.png"))]
    replies = {}
    for name, backend in (("plain", plain), ("combined", combined)):
        backend.grounder.teacher["segment"] = "Sure, [SEG]."
        try:
            replies[name] = Pipeline(backend, qwen25_fixture / "inputs", progress=False).run(Request("the red square", mode="direct"))
        finally:
            backend.grounder.teacher.pop("segment")
    keyframes = replies["plain"].keyframes
    assert replies["combined"].keyframes == keyframes and len(keyframes) == 2
    assert sorted(replies["combined"].objects) == [1]
    seeds = [(t, 1, {"input_masks": replies["plain"].masks(t)[1]}) for t in keyframes]
    height, width = frames[0].shape[:2]
    expected = reference(folder, frames, seeds, start=keyframes[0], size=(height, width))
    for t in range(len(frames)):
        assert np.array_equal(replies["combined"].masks(t)[1], expected[t][1]), t
