"""Sa2VA backend against the official implementation's outputs (`pytest -k fixture`).

The tiny random checkpoint in ../shared/fixtures is loaded through the same code path as a
hub checkpoint (config.json read here, no trust_remote_code) and must reproduce the official
`[SEG]` states, embeddings, SAM 2 logits and masks.
"""

import json
import shutil
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from agent.backends.sa2va.spec import load_sa2va
from agent.errors import UserError
from agent.pipeline import segment
from agent.video import VideoSource

CASES = ["one_object", "two_objects"]
FIXTURE_PIXELS = dict(min_pixels=4 * 28 * 28, max_pixels=16 * 28 * 28)


# Every fixture's reference outputs come from the official code, which normalises SAM 2's input with the
# ImageNet mean/std rounded to bfloat16: the default, so each loads exactly as a hub checkpoint does.
def load_fixture(folder, checkpoint=None, **options):
    options = {"keyframe_strategy": "first", **FIXTURE_PIXELS, **options}
    return load_sa2va(str(checkpoint or folder / "checkpoint"), "cpu", sam2_config=folder / "sam2_tiny_test.yaml", **options)


@pytest.fixture(scope="module")
def backend(qwen25_fixture):
    return load_fixture(qwen25_fixture)


def expected(folder, case, name):
    return np.load(folder / "expected" / case / f"{name}.npy")


def ground_case(backend, folder, case):
    run = json.loads((folder / "expected" / case / "run.json").read_text())
    video = VideoSource.open(folder / "inputs")
    keyframes = video.read_many(range(min(5, len(video))))  # the reference's first-5 frames
    grounding = backend.grounder.ground(keyframes, run["instruction"], answer=run["forced_answer"])
    return run, video, keyframes, grounding


from conftest import FIXTURES, require_shared  # noqa: E402  (../shared, or $RVOS_SHARED)
FAMILY_FIXTURES = {"qwen3_vl": FIXTURES / "sa2va-qwen3-vl-tiny", "internvl": FIXTURES / "sa2va-internvl-qwen2-tiny",
                   "internlm2": FIXTURES / "sa2va-internlm2-tiny"}


@pytest.fixture(scope="module")
def family_backends():
    loaded = {}

    def get(family):
        folder = FAMILY_FIXTURES[family]
        require_shared(folder, f"the Sa2VA {family} fixture")
        if family not in loaded:
            loaded[family] = load_fixture(folder)
        return loaded[family], folder

    return get


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl", "internvl", "internlm2"])
@pytest.mark.parametrize("case", CASES)
def test_fixture_matches_official_outputs(request, family, case):
    if family == "qwen2_5_vl":
        backend, folder = request.getfixturevalue("backend"), request.getfixturevalue("qwen25_fixture")
    else:
        backend, folder = request.getfixturevalue("family_backends")(family)
    assert backend.grounder.family == ("internvl" if family == "internlm2" else family)
    check_against_reference(backend, folder, case)


def check_against_reference(backend, qwen25_fixture, case):
    run, video, keyframes, grounding = ground_case(backend, qwen25_fixture, case)
    tokenizer = backend.grounder.tokenizer
    if "forced_ids" in run:  # the official slow tokenizer decodes with spaces around added tokens: compare ids
        assert tokenizer(grounding.answer + "<|im_end|>", add_special_tokens=False)["input_ids"] == run["generated_ids"]
    else:
        assert grounding.answer == run["prediction"].replace("<|im_end|>", "")
    if (qwen25_fixture / "expected" / case / "input_ids.npy").is_file():
        prompt = backend.grounder.prompt_inputs([keyframes[i] for i in sorted(keyframes)], grounding.extras["request"])
        np.testing.assert_array_equal(prompt["input_ids"][0].cpu().numpy(), expected(qwen25_fixture, case, "input_ids"))
    np.testing.assert_allclose(grounding.extras["seg_hidden"].numpy(), expected(qwen25_fixture, case, "seg_hidden"), atol=1e-4, rtol=0)
    np.testing.assert_allclose(grounding.extras["seg_embedding"].numpy(), expected(qwen25_fixture, case, "seg_embedding"), atol=1e-4, rtol=0)

    frames = list(backend.tracker.track_logits(video, grounding.prompts, keyframes))
    logits = np.stack([np.stack([f.logits[i].numpy() for i in grounding.object_ids]) for f in frames], axis=1)[:, :, None]
    want = expected(qwen25_fixture, case, "mask_logits")
    assert logits.shape == want.shape
    # float32 rounding, amplified where it flips a bfloat16 rounding of the memory: tiny against
    # the logits' scale (about ±160 here); an algorithmic difference is orders of magnitude larger
    assert np.abs(logits - want).max() <= 1e-3 * np.abs(want).max()

    masks = list(backend.tracker.track(video, grounding.prompts, keyframes))
    got = np.stack([np.stack([m.masks[i] for i in grounding.object_ids]) for m in masks], axis=1)
    want_masks = expected(qwen25_fixture, case, "masks")
    assert got.shape == want_masks.shape
    per_frame = (got == want_masks).reshape(got.shape[0], got.shape[1], -1).mean(-1)
    assert per_frame.min() >= 0.999


def relayout(folder, tmp_path, rename):
    """A copy of the checkpoint with its tensors renamed (other files unchanged)."""
    target = tmp_path / "checkpoint"
    shutil.copytree(folder / "checkpoint", target)
    tensors = load_file(target / "model.safetensors")
    save_file({rename(k): v for k, v in tensors.items() if rename(k)}, target / "model.safetensors", metadata={"format": "pt"})
    return target


def current_layout(key):
    if key.startswith("model.visual."):
        return "model.model.visual." + key[len("model.visual."):]
    if key.startswith("model.model."):
        return "model.model.language_model." + key[len("model.model."):]
    return key


def test_fixture_loads_in_both_key_layouts(qwen25_fixture, tmp_path):
    keys = load_file(qwen25_fixture / "checkpoint" / "model.safetensors").keys()
    assert any(k.startswith("model.model.layers.") for k in keys)  # the fixture is the legacy layout
    moved = relayout(qwen25_fixture, tmp_path, current_layout)
    backend = load_fixture(qwen25_fixture, checkpoint=moved)
    _, _, _, grounding = ground_case(backend, qwen25_fixture, "one_object")
    np.testing.assert_allclose(grounding.extras["seg_hidden"].numpy(), expected(qwen25_fixture, "one_object", "seg_hidden"), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "rename,message",
    [
        (lambda k: None if k.endswith("no_obj_ptr") else k, "SAM 2 weights do not fit"),
        (lambda k: k.replace("model.model.layers.1.", "model.model.layers.7."), "language model weights do not fit"),
    ],
)
def test_fixture_key_mismatch_is_refused(qwen25_fixture, tmp_path, rename, message):
    broken = relayout(qwen25_fixture, tmp_path, rename)
    with pytest.raises(UserError, match=message):
        load_fixture(qwen25_fixture, checkpoint=broken)


def test_fixture_answer_without_seg_gives_text_and_empty_masks(backend, qwen25_fixture, tmp_path):
    video = qwen25_fixture / "inputs"
    backend.grounder.teacher = {"segment": "There is no cat in this video."}
    try:
        run = segment(video, "the cat", backend, tmp_path / "out", mode="direct", progress=False)
    finally:
        backend.grounder.teacher = {}
    assert run.answer == "There is no cat in this video." and run.reply.prompts == []
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["objects"] == [] and len(result["frames"]) == 8
    assert all(not np.array(Image.open(p)).any() for p in (tmp_path / "out" / "masks").iterdir())


def segment_one_frame(backend, folder, out):
    """Frame 3 of the fixture as an image, answer forced; one keyframe, one prompted object."""
    backend.grounder.teacher = {"segment": "Sure, [SEG]."}
    try:
        run = segment(folder / "inputs" / "00003.png", "the red square", backend, out, mode="direct", progress=False)
    finally:
        backend.grounder.teacher = {}
    assert run.keyframes == [0] and len(run.reply.prompts) == 1
    return run


def test_fixture_one_frame_input(backend, qwen25_fixture, tmp_path):
    segment_one_frame(backend, qwen25_fixture, tmp_path / "out")
    assert [p.name for p in (tmp_path / "out" / "masks").iterdir()] == ["00000.png"]


def test_fixture_generation_path_runs(backend, qwen25_fixture):
    video = VideoSource.open(qwen25_fixture / "inputs")
    backend.grounder.max_new_tokens = 6
    out = backend.grounder.run([video.frame(0), video.frame(1)], "Please segment the red square.")
    assert isinstance(out.answer, str)
    assert len(out.seg_embedding) == out.answer.count("[SEG]") == len(out.seg_hidden)


def test_fixture_cli_on_a_real_video(qwen25_fixture, refdavis, tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable, "-m", "agent", "segment", str(refdavis / "JPEGImages" / "car-shadow"), "a white car crossing a signal",
        "--out", str(out), "--backend", "sa2va", "--model", str(qwen25_fixture / "checkpoint"),
        "--sam2-config", str(qwen25_fixture / "sam2_tiny_test.yaml"), "--answer", "Sure, [SEG].", "--mode", "direct",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "answer: Sure, [SEG]." in done.stdout
    result = json.loads((out / "result.json").read_text())
    assert result["backend"] == "sa2va" and result["keyframes"] == [0, 10, 20, 29, 39]
    assert [o["id"] for o in result["objects"]] == [1] and len(result["frames"]) == 40
    assert len(list((out / "masks").iterdir())) == 40 and (out / "overlay.mp4").stat().st_size > 0


def fixture_checkpoint(folder: Path, out: Path) -> Path:
    """The fixture's checkpoint as `rvos train` would write it: its SAM 2 yaml and settings in config.json."""
    out.mkdir()
    for file in (folder / "checkpoint").iterdir():
        if file.name != "config.json":
            (out / file.name).symlink_to(file)
    shutil.copyfile(folder / "sam2_tiny_test.yaml", out / "sam2_config.yaml")
    config = json.loads((folder / "checkpoint" / "config.json").read_text())
    config["rvos"] = dict(FIXTURE_PIXELS, sam2_config="sam2_config.yaml")
    (out / "config.json").write_text(json.dumps(config))
    return out


@pytest.mark.parametrize("name", [p.name for p in [*FAMILY_FIXTURES.values(), FIXTURES / "sa2va-qwen2_5-vl-tiny", FIXTURES / "sa2va-i-internvl-tiny"]])
def test_fixture_rvos_segment_reproduces_official_masks(name, tmp_path, capsys):
    from agent.writers import decode_rle
    from conftest import run_cli

    folder = FIXTURES / name
    require_shared(folder, f"the fixture {name}")
    run = json.loads((folder / "expected" / "two_objects" / "run.json").read_text())
    model = fixture_checkpoint(folder, tmp_path / "checkpoint")
    strategy = [] if "keyframe_indices" in run else ["--keyframe-strategy", "first"]  # Sa2VA-i: its own default
    code, out, err = run_cli(capsys, "segment", folder / "inputs", run["instruction"].replace("<image>", ""), "--out", tmp_path / "out",
                             "--backend", "sa2va", "--model", model, "--keyframes", 5, *strategy,
                             "--answer", run["forced_answer"], "--mode", "direct", "--no-overlay")  # the official protocol
    assert code == 0, err
    assert json.loads((tmp_path / "out" / "result.json").read_text())["keyframes"] == run.get("keyframe_indices", [0, 1, 2, 3, 4])
    frames = json.loads((tmp_path / "out" / "result.json").read_text())["frames"]
    want = expected(folder, "two_objects", "masks")  # [objects, frames, h, w]
    got = np.stack([np.stack([decode_rle(f["objects"][str(i + 1)]["rle"]) for f in frames]) for i in range(len(want))])
    assert (got == want).reshape(*want.shape[:2], -1).mean(-1).min() >= 0.999


def test_fixture_hub_id_without_hub_fails_clearly(tmp_path, qwen25_fixture):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "agent", "segment", str(qwen25_fixture / "inputs"), "the red square", "--out", str(tmp_path / "o"),
           "--backend", "sa2va", "--model", "ByteDance/Sa2VA-Qwen2_5-VL-3B"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 2
    assert "cannot get ByteDance/Sa2VA-Qwen2_5-VL-3B from the Hugging Face hub" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_fixture_internvl_single_image_is_tiled(family_backends, tmp_path):
    backend, folder = family_backends("internvl")
    image = Image.open(folder / "inputs" / "00003.png")  # 96×80: InternVL's tiling picks a 4×3 grid
    inputs = backend.grounder.inputs([image], "Please segment the red square.")
    assert inputs["pixel_values"].shape == (13, 3, 448, 448)  # 12 tiles + the thumbnail
    context = backend.grounder.inputs.image_token_id
    assert int((inputs["input_ids"] == context).sum()) == 13 * 256
    segment_one_frame(backend, folder, tmp_path / "out")
    assert np.array(Image.open(tmp_path / "out" / "masks" / "00000.png")).shape == (80, 96)


def test_fixture_internvl_generation_path_runs(family_backends):
    backend, folder = family_backends("internvl")
    video = VideoSource.open(folder / "inputs")
    backend.grounder.max_new_tokens = 4
    out = backend.grounder.run([video.frame(0), video.frame(1)], "Please segment the red square.")
    assert len(out.seg_embedding) == out.answer.count("[SEG]")


def test_fixture_internvl_key_mismatch_and_unknown_language_models_are_refused(tmp_path):
    folder = FAMILY_FIXTURES["internvl"]
    require_shared(folder, "the Sa2VA InternVL fixture")
    broken = relayout(folder, tmp_path, lambda k: None if k.endswith("layers.1.ls2") else k)
    with pytest.raises(UserError, match="language model weights do not fit.*1 missing"):
        load_fixture(folder, checkpoint=broken)
    config = json.loads((broken / "config.json").read_text())
    config["llm_config"]["architectures"] = ["MambaForCausalLM"]
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="MambaForCausalLM.*not supported"):
        load_fixture(folder, checkpoint=broken)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "internvl", "internlm2"])
def test_fixture_exported_checkpoint_reproduces_official_outputs(request, family, tmp_path):
    """What `rvos train` writes (official layout, its SAM 2 yaml inside) loads like an official file."""
    from agent.backends.sa2va import checkpoint
    from agent.backends.sa2va.export import save_checkpoint
    from agent.backends.sa2va.families import family_of

    if family == "qwen2_5_vl":
        backend, folder = request.getfixturevalue("backend"), request.getfixturevalue("qwen25_fixture")
    else:
        backend, folder = request.getfixturevalue("family_backends")(family)
    config = checkpoint.read_config(folder / "checkpoint")
    g = backend.grounder
    extras = dict(FIXTURE_PIXELS)
    out = save_checkpoint(tmp_path / "exported", config, g.vlm, family_of(config), g.inputs, g.projector, backend.tracker.model,
                          sam2_yaml=folder / "sam2_tiny_test.yaml", extras=extras)
    original = load_file(folder / "checkpoint" / "model.safetensors")
    written = load_file(out / "model.safetensors")
    assert len(written) == len(original)
    if family != "qwen2_5_vl":  # InternVL's and InternLM2's own names come back, fused wqkv included
        assert written.keys() == original.keys()
        assert all(torch.equal(written[k], original[k]) for k in original)
    reloaded = load_sa2va(str(out), "cpu", keyframe_strategy="first")  # SAM 2 yaml and pixel limits from the folder
    check_against_reference(reloaded, folder, "two_objects")


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl", "internvl", "internlm2"])
def test_fixture_training_conversation_labels_every_answer(family, qwen25_fixture):
    """`rvos train` asks about several objects in one conversation; with each official tokenizer and
    chat template, every answer is labelled and each turn's [SEG] is found."""
    from agent.training.data import Clip, Referral, seg_answer
    from agent.training.model import Sa2VAForTraining, Trainable

    folder = qwen25_fixture if family == "qwen2_5_vl" else FAMILY_FIXTURES[family]
    require_shared(folder, f"the Sa2VA {family} fixture")
    loaded = load_fixture(folder)
    model = Sa2VAForTraining(loaded.grounder, loaded.tracker, Trainable(lora_rank=0))
    frames = [Image.new("RGB", (112, 112), (60, 60, 60)) for _ in range(2)]
    masks = np.zeros((2, 112, 112), bool)
    texts = ["the red circle", "the dog on the left", "a cat"]
    clip = Clip(frames, [0, 1], [Referral(text, masks) for text in texts], seg_answer())
    full, labels, positions = model.conversation(clip)
    tokenizer = loaded.grounder.tokenizer
    answered = labels[0][labels[0] != -100]
    assert tokenizer.decode(answered).count("Sure, [SEG].") == 3
    assert len(positions) == 3 and (full["input_ids"][0, positions] == loaded.grounder.seg_token_id).all()
    prompt = tokenizer.decode(full["input_ids"][0])
    assert all(prompt.index(texts[n]) < prompt.index(texts[n + 1]) for n in range(2))  # one turn each, in order
