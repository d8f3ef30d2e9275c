"""Sa2VA region prompts (`<vp>` masks on one image) against the official code's outputs (`pytest -k region_prompt`).

The fixture ../shared/fixtures/sa2va-vp-internvl-tiny records the official InternVL-family inference on ONE image
with and without `mask_prompts`; its checkpoint loads through the same path as a hub checkpoint. Tolerances are
the fixture README's: answer logits, image and region embeddings, `[SEG]` states within 1e-4; SAM 2 logits
within 1e-3; ids, region counts, sampled masks and output masks exactly.
"""

from __future__ import annotations

import json
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from PIL import Image

from agent.backends.sa2va import region_prompts
from agent.backends.sa2va.spec import load_sa2va
from agent.errors import UserError
from agent.video import VideoSource
from conftest import FIXTURES, require_shared

VP_FIXTURE = FIXTURES / "sa2va-vp-internvl-tiny"
CASES = ["one_region", "two_regions_seg", "no_region_image", "zero_feature_region"]
CLOSE, SAM_CLOSE = 1e-4, 1e-3


@pytest.fixture(scope="module")
def folder():
    return require_shared(VP_FIXTURE, "the Sa2VA region-prompt fixture (sa2va-vp-internvl-tiny)")


@pytest.fixture(scope="module")
def backend(folder):
    loaded = load_sa2va(str(folder / "checkpoint"), "cpu", sam2_config=folder / "sam2_tiny_test.yaml")
    loaded.grounder.record_logits = True
    return loaded


def image_of(folder) -> Image.Image:
    return Image.open(folder / "inputs" / "image.png").convert("RGB")


def case_inputs(folder, case):
    run = json.loads((folder / "expected" / case / "run.json").read_text())
    # as the official run was given them: (png > 127) per region
    masks = [np.array(Image.open(folder / "inputs" / name)) > 127 for name in run.get("region_masks", [])]
    return run, masks


def expected(folder, case, name):
    return np.load(folder / "expected" / case / f"{name}.npy")


@contextmanager
def model_inputs(grounder):
    """The last call's `input_ids` given to the VLM and `inputs_embeds` given to its language model."""
    seen = {}

    def vlm_hook(module, args, kwargs):
        seen["input_ids"] = kwargs["input_ids"][0].cpu().numpy()

    def llm_hook(module, args, kwargs):
        seen["inputs_embeds"] = kwargs["inputs_embeds"][0].float().cpu().numpy()

    handles = [grounder.vlm.register_forward_pre_hook(vlm_hook, with_kwargs=True),
               grounder.vlm.model.language_model.register_forward_pre_hook(llm_hook, with_kwargs=True)]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def test_region_prompt_single_image_takes_the_tiled_path(backend, folder):
    """96×80 → the 4×3 grid + thumbnail, pixels as the official preprocessing, InternViT + mlp1 features."""
    pixel_values = backend.grounder.inputs.tiles([image_of(folder)])
    assert tuple(pixel_values.shape) == (13, 3, 448, 448)
    values = pixel_values.double()
    stats = torch.stack([values.mean((2, 3)), values.std((2, 3)), values.amin((2, 3)), values.amax((2, 3))], -1)
    np.testing.assert_allclose(stats.numpy(), np.load(folder / "expected" / "pixel_values_stats.npy"), atol=1e-6, rtol=0)
    with torch.inference_mode():
        features = backend.grounder.vlm.get_image_features(pixel_values=pixel_values, return_dict=True).pooler_output
    np.testing.assert_allclose(features.numpy(), np.load(folder / "expected" / "vit_embeds.npy"), atol=CLOSE, rtol=0)


@pytest.mark.parametrize("case", CASES)
def test_region_prompt_case_matches_official(backend, folder, case):
    run, masks = case_inputs(folder, case)
    grounder, image = backend.grounder, image_of(folder)
    with model_inputs(grounder) as seen:
        result = region_prompts.describe(backend, image, masks, run["instruction"], answer=run["forced_answer"])
    grounding = result.grounding
    assert grounder.tokenizer(result.text + "<|im_end|>", add_special_tokens=False)["input_ids"] == run["forced_ids"]
    assert result.text == run["prediction"].removesuffix("<|im_end|>")

    prompt_ids = expected(folder, case, "input_ids")
    np.testing.assert_array_equal(seen["input_ids"][: len(prompt_ids)], prompt_ids)
    assert seen["input_ids"][len(prompt_ids):].tolist() == run["forced_ids"]  # the teacher-forced answer follows
    np.testing.assert_allclose(grounding.extras["answer_logits"].numpy(), expected(folder, case, "answer_logits"), atol=CLOSE, rtol=0)

    # the image block: every tile's rows in tile order, the thumbnail last
    embeds, context = seen["inputs_embeds"], grounder.inputs.image_token_id
    image_start = int(np.flatnonzero(prompt_ids == grounder.tokenizer.convert_tokens_to_ids("<img>"))[0]) + 1
    image_rows = embeds[image_start : image_start + run["num_image_tokens"]]
    np.testing.assert_allclose(image_rows, np.load(folder / "expected" / "vit_embeds.npy").reshape(-1, image_rows.shape[1]), atol=CLOSE, rtol=0)

    pixels = run.get("region_pixels", [])
    assert result.region_pixels == pixels
    assert result.empty_regions == [i + 1 for i, n in enumerate(pixels) if n == 0]
    assert len(result.notes) == len(result.empty_regions)
    if masks:
        np.testing.assert_array_equal(grounding.extras["region_grid"].numpy(), expected(folder, case, "prompt_masks_16"))
        vp_start, vp_end = (grounder.tokenizer.convert_tokens_to_ids(t) for t in ("<vp>", "</vp>"))
        for n, (start, end) in enumerate(run["vp_token_spans"], start=1):
            assert prompt_ids[start] == vp_start and prompt_ids[end] == vp_end
            assert (prompt_ids[start + 1 : end] == context).all()
            np.testing.assert_allclose(embeds[start + 1 : end], expected(folder, case, f"vp_embeds_region{n}"), atol=CLOSE, rtol=0)
    else:
        assert int((prompt_ids == context).sum()) == run["num_image_tokens"]  # no region placeholders

    if run.get("num_seg", 0) == 0:
        assert result.masks == {} and grounding.prompts == []
        return
    np.testing.assert_allclose(grounding.extras["seg_hidden"].numpy(), expected(folder, case, "seg_hidden"), atol=CLOSE, rtol=0)
    np.testing.assert_allclose(grounding.extras["seg_embedding"].numpy(), expected(folder, case, "seg_embedding"), atol=CLOSE, rtol=0)
    check_sam2_half(backend, folder, case, image, grounding, result.masks)


def check_sam2_half(backend, folder, case, image, grounding, masks):
    """SAM 2 on the one image: the preprocessed input, logits at SAM 2 size and at image size, the masks."""
    width, height = image.size
    np.testing.assert_allclose(backend.tracker.preprocess(image).numpy(), expected(folder, case, "g_pixel_values"), atol=1e-6, rtol=0)
    frame = next(iter(backend.tracker.track_logits(VideoSource.open(image), grounding.prompts, {0: image})))
    ids = grounding.object_ids
    sam_size = np.stack([frame.logits[i].numpy() for i in ids])[None, :, None]
    image_size = np.stack([frame.resized(i, height, width).numpy() for i in ids])[None, :, None]
    np.testing.assert_allclose(sam_size, expected(folder, case, "sam_mask_logits"), atol=SAM_CLOSE, rtol=0)
    np.testing.assert_allclose(image_size, expected(folder, case, "mask_logits"), atol=SAM_CLOSE, rtol=0)
    got = np.stack([masks[i] for i in ids])[None]
    np.testing.assert_array_equal(got, expected(folder, case, "masks").reshape(got.shape))


def test_region_prompt_image_file_grounds_on_the_single_image_path(backend, folder):
    """An image file is a one-frame video: grounding it gives the official no-region single-image outputs."""
    run, _ = case_inputs(folder, "no_region_image")
    video = VideoSource.open(folder / "inputs" / "image.png")
    assert len(video) == 1
    keyframes = video.read_many([0])
    with model_inputs(backend.grounder) as seen:
        grounding = backend.grounder.ground(keyframes, run["instruction"], answer=run["forced_answer"])
    prompt_ids = expected(folder, "no_region_image", "input_ids")
    np.testing.assert_array_equal(seen["input_ids"][: len(prompt_ids)], prompt_ids)
    np.testing.assert_allclose(grounding.extras["answer_logits"].numpy(), expected(folder, "no_region_image", "answer_logits"), atol=CLOSE, rtol=0)
    np.testing.assert_allclose(grounding.extras["seg_hidden"].numpy(), expected(folder, "no_region_image", "seg_hidden"), atol=CLOSE, rtol=0)
    masks = next(iter(backend.tracker.track(video, grounding.prompts, keyframes))).masks
    np.testing.assert_array_equal(masks[1], expected(folder, "no_region_image", "masks")[0, 0])


@pytest.mark.parametrize("case", ["one_region", "zero_feature_region"])
def test_region_prompt_generation_starts_as_official(backend, folder, case):
    """Greedy generation (no forced answer) sees the same prompt: its first token is the official argmax."""
    run, masks = case_inputs(folder, case)
    grounder = backend.grounder
    grounder.max_new_tokens = 1
    try:
        grounding = grounder.describe(image_of(folder), masks, run["instruction"])
    finally:
        grounder.max_new_tokens = 512
    first = grounder.tokenizer(grounding.answer, add_special_tokens=False)["input_ids"][0]
    assert first == run["answer_argmax_ids"][0]
    np.testing.assert_allclose(grounding.extras["answer_logits"][0].numpy(), expected(folder, case, "answer_logits")[0], atol=CLOSE, rtol=0)


def test_region_prompt_placeholder_mismatch_is_refused(backend, folder):
    """The official code would insert no image features at all here; this refuses instead."""
    _, masks = case_inputs(folder, "one_region")
    with pytest.raises(UserError, match="image placeholder tokens"):
        backend.grounder.describe(image_of(folder), masks, "What is <IMG_CONTEXT> region1?", answer="It is.")


def test_region_prompt_masks_must_fit_the_image(backend, folder):
    with pytest.raises(UserError, match="region mask 1 is 40×30 but the image is 96×80"):
        backend.grounder.describe(image_of(folder), [np.ones((30, 40), bool)], "What is region1?", answer="It is.")


def test_region_prompt_refused_for_a_family_without_them(qwen25_fixture, folder):
    """Qwen-VL Sa2VA has no region prompts in the official code: an explicit refusal, not a silent answer."""
    qwen = load_sa2va(str(qwen25_fixture / "checkpoint"), "cpu", sam2_config=qwen25_fixture / "sam2_tiny_test.yaml")
    assert not qwen.grounder.supports_region_prompts
    _, masks = case_inputs(folder, "one_region")
    image = image_of(folder)
    with pytest.raises(region_prompts.RegionPromptsUnsupported, match="qwen2_5_vl models take no region prompts") as refused:
        region_prompts.describe(qwen, image, masks, "What is region1?", answer="It is a red square.")
    assert isinstance(refused.value, UserError) and refused.value.family == "qwen2_5_vl"
    with pytest.raises(region_prompts.RegionPromptsUnsupported):  # the grounder alone says the same
        qwen.grounder.describe(image, masks, "What is region1?", answer="It is a red square.")
