"""A person's clicks and boxes in our SAM 2 tracker against the `sam2` package's own video predictor
(`add_new_points_or_box` + `propagate_in_video`): same weights, same frames, same logits."""

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from agent.grounder.protocol import ObjectPrompt
from agent.tracker.sam2_language import build_language_sam2
from agent.tracker.sam2_stream import SAM2StreamTracker
from agent.video import VideoSource

# what the stock predictor's builder sets
STOCK_OVERRIDES = {"binarize_mask_from_pts_for_mem_enc": True}


@pytest.fixture(scope="module")
def models(qwen25_fixture, tmp_path_factory):
    torch.manual_seed(0)
    node = OmegaConf.load(qwen25_fixture / "sam2_tiny_test.yaml")
    node.model = OmegaConf.merge(node.model, STOCK_OVERRIDES)
    yaml = tmp_path_factory.mktemp("sam2") / "config.yaml"
    OmegaConf.save(node, yaml)
    stock_node = node.model.copy()
    stock_node._target_ = "sam2.sam2_video_predictor.SAM2VideoPredictor"
    stock_node.fill_hole_area = 0  # no hole filling (a CUDA extension)
    stock = instantiate(stock_node, _recursive_=True).eval()
    with torch.no_grad():  # random weights say "no object" after the prompt: every later mask would be empty
        head = stock.sam_mask_decoder.pred_obj_score_head
        (head.layers[-1] if hasattr(head, "layers") else head).bias.fill_(10.0)
    ours, missing, unexpected = build_language_sam2(yaml, stock.state_dict())
    assert not missing and not unexpected
    ours.keep_logits_of_absent_objects = False  # stock behaviour (Sa2VA's differs only for absent objects)
    return stock, ours


@pytest.fixture(scope="module")
def jpeg_frames(qwen25_fixture, tmp_path_factory):
    """The fixture's frames as JPEGs (what the stock predictor reads)."""
    folder = tmp_path_factory.mktemp("frames")
    for i, image in VideoSource.open(qwen25_fixture / "inputs").frames():
        image.save(folder / f"{i:05d}.jpg", quality=95)
    return folder


def stock_logits(stock, frames, frame, **prompt):
    """Forwards from the prompt, and backwards in a session of its own: the stock predictor's second
    direction would attend to the first one's frames, ours keeps each direction's memory apart."""
    logits = {}
    with torch.inference_mode():
        for reverse in ([False, True] if frame > 0 else [False]):
            state = stock.init_state(str(frames))
            stock.add_new_points_or_box(state, frame, 1, **prompt)
            logits |= {t: m[0, 0].numpy() for t, _, m in stock.propagate_in_video(state, reverse=reverse)}
    return logits


def our_logits(ours, frames, prompt):
    video = VideoSource.open(frames)
    width, height = video.size
    tracker = SAM2StreamTracker(ours)
    return {f.frame_index: f.resized(1, height, width).numpy() for f in tracker.track_logits(video, [prompt], {})}


@pytest.mark.parametrize("frame,points,labels,box", [
    (0, [(30.0, 40.0)], [1], None),                      # one click: SAM 2's multimask choice
    (0, [(30.0, 40.0), (70.0, 20.0)], [1, 0], None),     # a positive and a negative click
    (3, [(50.0, 45.0)], [1], (20.0, 25.0, 80.0, 70.0)),   # box + click mid-video: tracked both ways
])
def test_clicks_and_boxes_match_the_stock_predictor(models, jpeg_frames, frame, points, labels, box):
    stock, ours = models
    prompt = {"points": np.array(points, np.float32), "labels": np.array(labels, np.int32)}
    if box is not None:
        prompt["box"] = np.array(box, np.float32)
    want = stock_logits(stock, jpeg_frames, frame, **prompt)
    got = our_logits(ours, jpeg_frames, ObjectPrompt(1, frame, points=points, point_labels=labels, box=box))
    assert sorted(got) == sorted(want) == list(range(8))
    scale = max(np.abs(w).max() for w in want.values())
    for t in want:  # frames before the prompt are held in float16 until the forward pass writes them
        assert np.abs(got[t] - want[t]).max() <= (1e-5 if t >= frame else 1e-3) * scale, t
        assert ((got[t] > 0) == (want[t] > 0)).mean() >= 0.999
