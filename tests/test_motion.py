"""Motion-aware memory (SAMURAI-style): the filter, the re-ranking, the memory gate, and the tracker option."""

import numpy as np
import torch

from agent.grounder.protocol import ObjectPrompt
from agent.tracker.motion import BoxKalman, MotionPrior, box_iou, mask_boxes
from agent.tracker.sam2_language import build_language_sam2
from agent.tracker.sam2_stream import SAM2StreamTracker
from agent.training.synthetic import generate
from agent.training.tiny import TINY_SAM2_YAML
from agent.video import VideoSource


def square(x, y, size=8, shape=(32, 32)):
    mask = torch.zeros(shape)
    mask[y : y + size, x : x + size] = 1.0
    return mask


def test_kalman_filter_follows_constant_velocity():
    kf = BoxKalman(np.array([0.0, 10, 8, 18]))
    for t in range(1, 12):
        kf.predict()
        kf.update(np.array([3.0 * t, 10, 3.0 * t + 8, 18]))
    predicted = kf.predict()
    np.testing.assert_allclose(predicted, [36, 10, 44, 18], atol=1.0)


def test_boxes_and_iou():
    boxes = mask_boxes(torch.stack([square(2, 4), torch.zeros(32, 32)]))
    assert boxes[0].tolist() == [2, 4, 10, 12] and np.isnan(boxes[1]).all()
    assert box_iou(boxes[0], boxes).tolist() == [1.0, 0.0]


def test_candidates_are_reranked_by_motion_once_the_filter_is_stable():
    prior = MotionPrior(stable_frames=3)
    prior.start(square(0, 10))
    for t in range(1, 6):  # moving right 2 px a frame
        chosen = prior.rescore(square(2 * t, 10)[None, None], torch.tensor([[0.9]]))
        assert chosen.shape == (1, 1)
        assert prior.observe(square(2 * t, 10), object_score=3.0)
    # SAM 2 prefers a distractor elsewhere (0.9) over the object on its path (0.8)
    candidates = torch.stack([square(24, 24), square(12, 10)])[None]
    scores = prior.rescore(candidates, torch.tensor([[0.9, 0.8]]))
    assert int(scores[0].argmax()) == 1
    assert prior.observe(square(12, 10), object_score=3.0)


def test_unconfident_frames_stay_out_of_memory():
    prior = MotionPrior(min_mask_iou=0.5)
    prior.start(square(0, 10))
    prior.rescore(square(1, 10)[None, None], torch.tensor([[0.3]]))
    assert not prior.observe(square(1, 10), object_score=3.0)  # SAM 2 itself is unsure
    prior.rescore(square(2, 10)[None, None], torch.tensor([[0.9]]))
    assert not prior.observe(square(2, 10), object_score=-2.0)  # object absent
    prior.rescore(square(3, 10)[None, None], torch.tensor([[0.9]]))
    assert prior.observe(square(3, 10), object_score=2.0)


def multimask_tiny_yaml(folder):
    """The tiny yaml with SAM 2's three candidate masks on, as the official configs have them."""
    from omegaconf import OmegaConf

    config = OmegaConf.load(TINY_SAM2_YAML)
    config.model.multimask_output_in_sam = True
    path = folder / "sam2_tiny_multimask.yaml"
    OmegaConf.save(config, path)
    return path


def test_tracker_option_reranks_and_gates(tmp_path):
    torch.manual_seed(0)
    root = generate(tmp_path / "video", 1, seed=2, length=12)
    video = VideoSource.open(next((root / "JPEGImages").iterdir()))
    first = np.array(VideoSource.open(next((root / "Annotations").iterdir())).frame(0).convert("L")) > 0
    prompts = [ObjectPrompt(object_id=1, frame_index=0, mask=first), ObjectPrompt(object_id=2, frame_index=0, mask=~first)]
    sam2, _, _ = build_language_sam2(multimask_tiny_yaml(tmp_path), {})
    plain = list(SAM2StreamTracker(sam2).track(video, prompts, {}))
    aware = SAM2StreamTracker(sam2, motion_aware=True)
    calls = []
    rescore = MotionPrior.rescore

    def counting(self, candidates, ious):
        calls.append(candidates.shape)
        return rescore(self, candidates, ious)

    MotionPrior.rescore = counting
    try:
        frames = list(aware.track(video, prompts, {}))
    finally:
        MotionPrior.rescore = rescore
    assert [f.frame_index for f in frames] == list(range(12)) == [f.frame_index for f in plain]
    assert all(set(f.masks) == {1, 2} for f in frames)
    assert len(calls) == 2 * 11 and all(shape[:2] == (1, 3) for shape in calls)  # each object alone, 3 candidates
    assert len(aware.last_memory_frames) == 2  # one group per object


def test_motion_aware_from_the_command_line(qwen25_fixture, tmp_path):
    import json
    import subprocess
    import sys

    base = [sys.executable, "-m", "agent", "segment", str(qwen25_fixture / "inputs"), "the red square", "--motion-aware"]
    done = subprocess.run(base + ["--out", str(tmp_path / "a"), "--backend", "sa2va", "--model", str(qwen25_fixture / "checkpoint"),
                                  "--sam2-config", str(qwen25_fixture / "sam2_tiny_test.yaml"), "--answer", "Sure, [SEG].", "--mode", "direct"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(json.loads((tmp_path / "a" / "result.json").read_text())["frames"]) == 8
    refused = subprocess.run(base + ["--out", str(tmp_path / "b"), "--backend", "lite"], capture_output=True, text=True)
    assert refused.returncode == 2 and "--motion-aware" in refused.stderr and "Traceback" not in refused.stderr


def test_tracking_starts_mid_video_and_runs_backwards(tmp_path):
    torch.manual_seed(0)
    root = generate(tmp_path / "video", 1, seed=3, length=10)
    video = VideoSource.open(next((root / "JPEGImages").iterdir()))
    labels = np.array(VideoSource.open(next((root / "Annotations").iterdir())).frame(6).convert("L"))
    prompts = [ObjectPrompt(object_id=1, frame_index=6, mask=labels == 1)]
    sam2, _, _ = build_language_sam2(TINY_SAM2_YAML, {})
    steps = []
    original = sam2.track_step

    def recording(**kwargs):
        steps.append((kwargs["frame_idx"], kwargs["track_in_reverse"], kwargs["is_init_cond_frame"]))
        return original(**kwargs)

    sam2.track_step = recording
    frames = list(SAM2StreamTracker(sam2).track_logits(video, prompts, {}))
    assert [f.frame_index for f in frames] == list(range(10))
    assert all(f.logits[1] is not None and f.logits[1].shape == (128, 128) for f in frames)
    assert steps[0] == (6, False, True)  # the prompted frame
    assert steps[1:7] == [(t, True, False) for t in (5, 4, 3, 2, 1, 0)]  # then back to frame 0
    assert steps[7:] == [(t, False, False) for t in (7, 8, 9)]  # then forwards


def test_backward_frames_are_encoded_once_for_all_objects(tmp_path):
    """Motion-aware tracking gives each object its own batch; going backwards, each frame is still
    read and encoded once, and each object's reverse tracking starts at its own first prompt."""
    torch.manual_seed(0)
    root = generate(tmp_path / "video", 1, seed=3, length=10)
    video = VideoSource.open(next((root / "JPEGImages").iterdir()))
    labels = {t: np.array(VideoSource.open(next((root / "Annotations").iterdir())).frame(t).convert("L")) for t in (4, 6)}
    prompts = [ObjectPrompt(object_id=1, frame_index=6, mask=labels[6] == 1),
               ObjectPrompt(object_id=2, frame_index=4, mask=labels[4] == 2)]
    sam2, _, _ = build_language_sam2(TINY_SAM2_YAML, {})
    encoded, reverse_steps = [], []
    sam2.image_encoder.register_forward_hook(lambda m, a, o: encoded.append(1))
    original = sam2.track_step

    def recording(**kwargs):
        if kwargs["track_in_reverse"]:
            reverse_steps.append(kwargs["frame_idx"])
        return original(**kwargs)

    sam2.track_step = recording
    worked = []
    frames = list(SAM2StreamTracker(sam2, motion_aware=True).track_logits(video, prompts, {}, progress=lambda *step: worked.append(step)))
    assert [f.frame_index for f in frames] == list(range(10))
    assert worked == [(done, 6) for done in range(1, 7)]  # each frame of the backward pass, 5…0, shown as it is done
    assert sorted(frames[0].low_res) == [1, 2]
    assert reverse_steps == [5, 4, 3, 3, 2, 2, 1, 1, 0, 0]  # object 1 from frame 5, object 2 from frame 3
    # prompted frames 4 and 6; backwards 5…0 once (not 5…0 and 3…0); forwards 5 and 6 for object 2, then 7…9
    assert len(encoded) == 2 + 6 + 5
