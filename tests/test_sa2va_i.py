"""Sa2VA-i's inference against the reference's outputs for the tiny Sa2VA-i fixture (`pytest -k fixture`):
keyframes, `[SEG]` states, the finetuned decoder's keyframe logits and masks, the original decoder's
propagation; the same from a plain Sa2VA checkpoint with `--propagation-weights`; and a Sa2VA-i checkpoint
run with Sa2VA's own inference."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from agent.backends.sa2va.spec import load_sa2va
from agent.errors import UserError
from agent.tracker.sa2va_i import Sa2VAiTracker
from agent.video import VideoSource
from conftest import FIXTURES, require_shared
from test_sa2va_fixture import check_against_reference, expected, load_fixture

SA2VA_I = FIXTURES / "sa2va-i-internvl-tiny"
SA2VA = FIXTURES / "sa2va-internvl-qwen2-tiny"  # the same weights, with Sa2VA's decoder only


@pytest.fixture(scope="module")
def fixture_folder():
    return require_shared(SA2VA_I, "the Sa2VA-i fixture")


@pytest.fixture(scope="module")
def sa2va_i(fixture_folder):
    return load_sa2va(str(fixture_folder / "checkpoint"), "cpu", sam2_config=fixture_folder / "sam2_tiny_test.yaml")


def check_sa2va_i(backend, case):
    run = json.loads((SA2VA_I / "expected" / case / "run.json").read_text())
    video = VideoSource.open(SA2VA_I / "inputs")
    indices = run["keyframe_indices"]
    keyframes = video.read_many(indices)
    grounding = backend.grounder.ground(keyframes, run["instruction"], answer=run["forced_answer"])
    for name in ("seg_hidden", "seg_embedding"):
        np.testing.assert_allclose(grounding.extras[name].numpy(), expected(SA2VA_I, case, name), atol=1e-4, rtol=0)

    want = expected(SA2VA_I, case, "keyframe_logits")
    got = backend.tracker.keyframe_logits([keyframes[t] for t in indices], grounding.extras["seg_embedding"]).numpy()
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-3 * np.abs(want).max()
    decoded = backend.tracker.keyframe_masks(keyframes, grounding.prompts, video.size)
    got = np.stack([np.stack([decoded[(i, t)] for t in indices]) for i in grounding.object_ids])
    assert (got == expected(SA2VA_I, case, "keyframe_masks")).reshape(*got.shape[:2], -1).mean(-1).min() >= 0.999

    frames = list(backend.tracker.track_logits(video, grounding.prompts, keyframes))
    logits = np.stack([np.stack([f.logits[i].numpy() for i in grounding.object_ids]) for f in frames], axis=1)[:, :, None]
    want = expected(SA2VA_I, case, "mask_logits")
    assert logits.shape == want.shape and np.abs(logits - want).max() <= 1e-3 * np.abs(want).max()
    masks = list(backend.tracker.track(video, grounding.prompts, keyframes))
    got = np.stack([np.stack([m.masks[i] for i in grounding.object_ids]) for m in masks], axis=1)
    assert (got == expected(SA2VA_I, case, "masks")).reshape(*got.shape[:2], -1).mean(-1).min() >= 0.999


@pytest.mark.parametrize("case", ["one_object", "two_objects"])
def test_fixture_sa2va_i_matches_the_reference(sa2va_i, case):
    assert isinstance(sa2va_i.tracker, Sa2VAiTracker) and sa2va_i.keyframe_strategy == "uniform-floor"
    check_sa2va_i(sa2va_i, case)


def decoder_file(tmp_path, shrink: bool = False):
    """The Sa2VA-i fixture's original decoder as an official SAM 2 `.pt` ({"model": …}, sam2_hiera_large.pt's layout)."""
    tensors = load_file(SA2VA_I / "checkpoint" / "model.safetensors")
    prefix = "grounding_encoder.sam2_model."
    model = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix + "sam_mask_decoder.")}
    model["image_encoder.trunk.pos_embed"] = torch.zeros(1)  # the rest of SAM 2 is there too, and ignored
    if shrink:
        key = next(k for k in model if k.endswith("iou_prediction_head.layers.0.weight"))
        model[key] = model[key][:, :-1]
    path = tmp_path / ("small.pt" if shrink else "sam2_hiera_tiny_test.pt")
    torch.save({"model": model}, path)
    return path


def test_fixture_propagation_weights_run_sa2va_i_on_a_plain_checkpoint(fixture_folder, tmp_path):
    require_shared(SA2VA, "the Sa2VA InternVL fixture")
    backend = load_fixture(SA2VA, inference="sa2va-i", propagation_weights=str(decoder_file(tmp_path)),
                           keyframe_strategy=None)
    assert isinstance(backend.tracker, Sa2VAiTracker) and backend.keyframe_strategy == "uniform-floor"
    check_sa2va_i(backend, "two_objects")

    with pytest.raises(UserError, match="needs SAM 2's original mask decoder.*--propagation-weights"):
        load_fixture(SA2VA, inference="sa2va-i")
    with pytest.raises(UserError, match="does not fit.*size mismatch"):
        load_fixture(SA2VA, inference="sa2va-i", propagation_weights=str(decoder_file(tmp_path, shrink=True)))
    (tmp_path / "notes.pt").write_text("not weights")
    with pytest.raises(UserError, match="cannot read .* as SAM 2 weights"):
        load_fixture(SA2VA, inference="sa2va-i", propagation_weights=str(tmp_path / "notes.pt"))
    with pytest.raises(UserError, match="no such file"):
        load_fixture(SA2VA, inference="sa2va-i", propagation_weights=str(tmp_path / "missing.pt"))


def test_fixture_sa2va_i_checkpoint_runs_sa2va_inference_too(fixture_folder):
    """`--inference sa2va` on a Sa2VA-i checkpoint is plain Sa2VA: its finetuned decoder tracks (the
    reference outputs of the plain Sa2VA fixture with the same weights)."""
    backend = load_fixture(SA2VA, checkpoint=fixture_folder / "checkpoint", inference="sa2va")
    assert not isinstance(backend.tracker, Sa2VAiTracker)
    check_against_reference(backend, SA2VA, "two_objects")


def test_fixture_rvos_eval_takes_the_inference(fixture_folder, refdavis, tmp_path, capsys):
    """`rvos eval --inference sa2va-i` reaches the loader: on a plain checkpoint without the original
    decoder it stops with one clear line before any work."""
    from conftest import run_cli

    code, _, err = run_cli(capsys, "eval", refdavis, "--backend", "sa2va", "--model", SA2VA / "checkpoint", "--sam2-config",
                           SA2VA / "sam2_tiny_test.yaml", "--inference", "sa2va-i", "--out", tmp_path / "eval")
    assert code == 2 and "--propagation-weights" in err and "Traceback" not in err
