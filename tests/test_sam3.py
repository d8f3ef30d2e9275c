"""The `sam3` backend against transformers' own SAM 3 video loop (`pytest -k sam3`).

A tiny random SAM 3 video model is built here from transformers' own config classes (small towers, a 1-layer
tracker), saved as a checkpoint folder and loaded by the backend as a hub checkpoint is. The reference is the
documented pre-loaded-video loop (`init_video_session(video=frames)`, `add_text_prompt`,
`propagate_in_video_iterator`, `postprocess_outputs` on every output) on the model as built, in this process.
The shared fixture (../shared/fixtures/sam3-video-tiny) adds transformers' outputs stored elsewhere: its
check.sh runs `rvos segment … --backend sam3` and compares the masks.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FIXTURES, ROOT, require_shared

from agent.backends import load_backend
from agent.backends.sam3.grounder import concept_phrase
from agent.backends.sam3.tracker import ProcessedFrames
from agent.errors import UserError
from agent.grounder.protocol import ObjectPrompt
from agent.pipeline import Pipeline, Request, segment
from agent.video import VideoSource

SIZE, HIDDEN = 112, 128  # model input (8 × 8 patches of 14); SAM 3 ties every hidden size to the FPN's (> 64)
PHRASE = "a red square"
FIXTURE = FIXTURES / "sam3-video-tiny"


def tiny_processor():
    """CLIP's tokenizer over the 256 byte-level symbols (no merges) and the processors at 112 pixels."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer, Sam2VideoVideoProcessor, Sam3ImageProcessor, Sam3VideoProcessor

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {s: i for i, s in enumerate(symbols)} | {s + "</w>": 256 + i for i, s in enumerate(symbols)}
    vocab |= {"<|startoftext|>": 512, "<|endoftext|>": 513}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=32)
    size = {"height": SIZE, "width": SIZE}
    return Sam3VideoProcessor(image_processor=Sam3ImageProcessor(size=size, mask_size={"height": 32, "width": 32}),
                              video_processor=Sam2VideoVideoProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3, size=size),
                              tokenizer=tokenizer, target_size=SIZE)


def tiny_config():
    from transformers import (CLIPTextConfig, Sam3Config, Sam3DETRDecoderConfig, Sam3DETREncoderConfig, Sam3GeometryEncoderConfig,
                              Sam3MaskDecoderConfig, Sam3TrackerVideoConfig, Sam3TrackerVideoMaskDecoderConfig,
                              Sam3TrackerVideoPromptEncoderConfig, Sam3VideoConfig, Sam3ViTConfig, Sam3VisionConfig)

    def vision():
        backbone = Sam3ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=SIZE,
                                 window_size=4, global_attn_indexes=[1], pretrain_image_size=56)
        return Sam3VisionConfig(backbone_config=backbone, fpn_hidden_size=HIDDEN, backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]])

    text = CLIPTextConfig(vocab_size=514, hidden_size=32, intermediate_size=64, projection_dim=32, num_hidden_layers=1,
                          num_attention_heads=2, max_position_embeddings=32, hidden_act="gelu", bos_token_id=512, eos_token_id=513,
                          pad_token_id=513)
    small = dict(hidden_size=HIDDEN, num_attention_heads=2, intermediate_size=64)
    detector = Sam3Config(vision_config=vision(), text_config=text,
                          geometry_encoder_config=Sam3GeometryEncoderConfig(**small, num_layers=1, roi_size=2),
                          detr_encoder_config=Sam3DETREncoderConfig(**small, num_layers=1),
                          detr_decoder_config=Sam3DETRDecoderConfig(**small, num_layers=1, num_queries=8),
                          mask_decoder_config=Sam3MaskDecoderConfig(hidden_size=HIDDEN, num_attention_heads=2, num_upsampling_stages=2))
    tracker = Sam3TrackerVideoConfig(
        vision_config=vision(), prompt_encoder_config=Sam3TrackerVideoPromptEncoderConfig(hidden_size=HIDDEN, image_size=SIZE),
        mask_decoder_config=Sam3TrackerVideoMaskDecoderConfig(hidden_size=HIDDEN, mlp_dim=64, num_hidden_layers=1, num_attention_heads=2,
                                                              iou_head_hidden_dim=32),
        memory_attention_hidden_size=HIDDEN, memory_attention_num_layers=1, memory_attention_feed_forward_hidden_size=64,
        memory_encoder_hidden_size=HIDDEN, mask_downsampler_embed_dim=HIDDEN, mask_downsampler_stride=4, memory_fuser_embed_dim=HIDDEN,
        memory_fuser_intermediate_dim=64)
    # a hotstart shorter than the video (outputs are held back, then released one by one, then flushed), lower
    # detection thresholds (random queries score about 0.5) and no NMS or hole filling (they need the `kernels` hub kernel)
    config = Sam3VideoConfig(detector_config=detector, tracker_config=tracker, low_res_mask_size=32, det_nms_thresh=0.0, fill_hole_area=0,
                             hotstart_delay=4, hotstart_unmatch_thresh=4, hotstart_dup_thresh=4, score_threshold_detection=0.3,
                             new_det_thresh=0.4)
    config.image_size = SIZE  # to every nested config
    return config


def tiny_model(presence_bias: float):
    """Random weights (seed 0); the presence head's bias says "there is one" (+) or "there is none" (−) for any
    phrase, and the tracker's object-score head says "still there", so tracks last."""
    from transformers import Sam3VideoModel

    torch.manual_seed(0)
    model = Sam3VideoModel(tiny_config()).eval()
    with torch.no_grad():
        model.detector_model.detr_decoder.presence_head.layer3.bias.fill_(presence_bias)
        model.tracker_model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(3.0)
    return model


def tiny_video(frames: int = 10) -> list[np.ndarray]:
    """A red square moving right and a blue one moving left, 96 × 72."""
    video = []
    for t in range(frames):
        frame = np.full((72, 96, 3), 80, np.uint8)
        frame[10:34, 5 + 4 * t:29 + 4 * t] = (220, 30, 30)
        frame[40:60, 60 - 3 * t:80 - 3 * t] = (30, 60, 220)
        video.append(frame)
    return video


@pytest.fixture(scope="module")
def sam3_models(tmp_path_factory):
    """The two random models ("present" and "absent"), each saved as a checkpoint folder."""
    built = {}
    for name, bias in (("present", 10.0), ("absent", -10.0)):
        model = tiny_model(bias)
        folder = tmp_path_factory.mktemp(f"sam3-{name}")
        model.save_pretrained(folder)
        tiny_processor().save_pretrained(folder)
        built[name] = (model, folder)
    return built


def transformers_loop(model, frames, phrase):
    """transformers' own loop: per yielded frame, its index, SAM 3 object ids, masks and scores."""
    processor = tiny_processor()
    session = processor.init_video_session(video=frames, inference_device="cpu")
    session = processor.add_text_prompt(session, phrase)
    outputs = []
    for output in model.propagate_in_video_iterator(session):
        post = processor.postprocess_outputs(session, output)
        outputs.append((int(output.frame_idx), post["object_ids"].tolist(), post["masks"].numpy(), post["scores"].numpy()))
    return outputs


@pytest.fixture(scope="module")
def sam3_present(sam3_models):
    model, folder = sam3_models["present"]
    return load_backend("sam3", str(folder), "cpu"), transformers_loop(model, tiny_video(), PHRASE)


def test_sam3_frames_are_preprocessed_as_the_processor_does():
    """Frame by frame, on demand: bit for bit what init_video_session(video=...) stores for the whole video."""
    processor, frames = tiny_processor(), tiny_video(4)
    whole = processor.init_video_session(video=frames, inference_device="cpu").processed_frames
    lazy = ProcessedFrames(VideoSource.open(frames), processor.video_processor, "cpu", torch.float32)
    assert len(lazy) == len(whole) == 4
    for t in range(4):
        assert torch.equal(lazy[t], whole[t]), t
    assert lazy.take_image(2).size == (96, 72) and not lazy.images.get(2)


def test_sam3_tracker_matches_transformers_loop_frame_by_frame(sam3_present):
    backend, reference = sam3_present
    video = VideoSource.open(tiny_video())
    grounding = backend.grounder.ground(video.read_many([0]), PHRASE)
    ours = list(backend.tracker.track(video, grounding.prompts, {}))
    assert [f.frame_index for f in ours] == [t for t, *_ in reference] == list(range(10))
    mapping: dict[int, int] = {}  # SAM 3 id → ours, by first output (ids from 1; SAM 3's from 0, with gaps)
    for frame, (t, ids, masks, scores) in zip(ours, reference):
        for sam_id in ids:
            mapping.setdefault(sam_id, len(mapping) + 1)
        assert sorted(frame.masks) == sorted(mapping[i] for i in ids), t
        for k, sam_id in enumerate(ids):
            assert np.array_equal(frame.masks[mapping[sam_id]], masks[k]), (t, sam_id)
            assert frame.scores[mapping[sam_id]] == float(scores[k])
        assert set(frame.found) == {mapping[i] for i in ids} - {i for f in ours[:t] for i in f.masks}
        assert all(owner == grounding.prompts[0].object_id for owner in frame.found.values())
        assert np.array_equal(np.asarray(frame.image), tiny_video()[t])
    # the case is not trivial: objects on every frame, two at once on one, and duplicates the hotstart hid
    assert all(ids for _, ids, *_ in reference) and max(len(ids) for _, ids, *_ in reference) >= 2
    assert set(mapping) != set(range(len(mapping)))  # SAM 3's ids have gaps (removed objects keep their numbers)


def test_sam3_two_phrases_in_one_session_match_transformers(sam3_models):
    """Two concept prompts share one session (one detector pass per frame); each instance says which found it."""
    model, folder = sam3_models["present"]
    backend = load_backend("sam3", str(folder), "cpu")
    phrases = {1: "a red square", 2: "a blue square"}
    processor = tiny_processor()
    session = processor.add_text_prompt(processor.init_video_session(video=tiny_video(6), inference_device="cpu"), list(phrases.values()))
    reference = []
    for output in model.propagate_in_video_iterator(session):
        post = processor.postprocess_outputs(session, output)
        reference.append((post["object_ids"].tolist(), post["masks"].numpy(), post["prompt_to_obj_ids"]))
    prompts = [ObjectPrompt(n, 0, label=phrase, concept=True) for n, phrase in phrases.items()]
    ours = list(backend.tracker.track(VideoSource.open(tiny_video(6)), prompts, {}))
    mapping, owner = {}, {}
    for frame, (ids, masks, by_phrase) in zip(ours, reference, strict=True):
        for phrase, found in by_phrase.items():
            for sam_id in found:
                owner[mapping.setdefault(sam_id, len(mapping) + 1)] = next(n for n, p in phrases.items() if p == phrase)
        assert sorted(frame.masks) == sorted(mapping[i] for i in ids)
        for k, sam_id in enumerate(ids):
            assert np.array_equal(frame.masks[mapping[sam_id]], masks[k])
        assert all(owner[i] == n for i, n in frame.found.items())
    assert set(owner.values()) == {1, 2}  # both phrases found something


def test_sam3_pipeline_reply_counts_every_instance(sam3_present):
    backend, reference = sam3_present
    reply = Pipeline(backend, tiny_video(), progress=False).run(Request(f"every {PHRASE}", mode="direct"))
    found = sorted({i for _, ids, *_ in reference for i in ids})
    assert sorted(reply.objects) == list(range(1, len(found) + 1))
    assert reply.answer == f'Found {len(found)} instances of "{PHRASE}".'
    assert [p.object_id for p in reply.prompts] == sorted(reply.objects) and all(p.concept for p in reply.prompts)
    mapping: dict[int, int] = {}
    for t, ids, masks, _ in reference:
        for sam_id in ids:
            mapping.setdefault(sam_id, len(mapping) + 1)
        ours = reply.masks(t)
        assert sorted(ours) == sorted(reply.objects)  # every object on every frame, empty where it is not output
        for sam_id, ours_id in mapping.items():
            expected = masks[ids.index(sam_id)] if sam_id in ids else np.zeros((72, 96), bool)
            assert np.array_equal(ours[ours_id], expected), (t, sam_id)


def test_sam3_planner_find_lists_every_instance_and_choose_tracks_it(sam3_present):
    """The planner's tools on sam3: `find` gives one numbered candidate per instance SAM 3 found (already tracked),
    and choosing one gives a reply whose masks are that instance's."""
    backend, _ = sam3_present
    pipeline = Pipeline(backend, tiny_video(), progress=False)
    direct = pipeline.run(Request(f"every {PHRASE}", mode="direct"))
    found = pipeline.find(PHRASE)
    assert sorted(found.masklets) == sorted(direct.objects) and len(found.masklets) > 1
    assert sorted(p.object_id for p in found.grounding.prompts) == sorted(found.masklets)
    last = max(found.masklets)
    chosen = pipeline.choose(PHRASE, "that one", [(found, last)], [])
    assert list(chosen.objects) == [1]
    for t in range(len(pipeline.video)):
        assert np.array_equal(chosen.masks(t)[1], direct.masks(t)[last]), t


def test_sam3_chat_session_keeps_the_instances(sam3_present):
    """A conversation (Session.ask, the chat and the page's door) takes the instances as its objects; asked again,
    the same instances keep their ids."""
    from agent.assistant import Assistant

    backend, reference = sam3_present
    session = Assistant(backend).open(tiny_video(), progress=False)
    first = session.ask(PHRASE, mode="direct")
    count = len({i for _, ids, *_ in reference for i in ids})
    assert sorted(session.objects.objects) == sorted(first.objects) == list(range(1, count + 1))
    second = session.ask(PHRASE, mode="direct")
    assert sorted(second.objects) == sorted(first.objects)
    for t in range(len(session.video)):
        assert all(np.array_equal(first.masks(t)[i], second.masks(t)[i]) for i in first.objects)


def test_sam3_no_instance_gives_empty_masks_and_says_so(sam3_models, tmp_path):
    model, folder = sam3_models["absent"]
    assert all(not ids for _, ids, *_ in transformers_loop(model, tiny_video(), "an elephant"))
    backend = load_backend("sam3", str(folder), "cpu")
    run = segment(tiny_video(), "an elephant", backend, tmp_path / "out", overlay=False, progress=False)
    assert run.reply.objects == {} and run.answer == 'There is no "an elephant" in the video.'
    pngs = sorted((tmp_path / "out" / "masks").glob("*.png"))
    assert len(pngs) == 10 and all(not np.array(Image.open(p)).any() for p in pngs)
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["answer"] == run.answer and result["objects"] == [] and result["backend"] == "sam3"


def test_sam3_concept_phrase():
    assert concept_phrase("a red square") == "a red square"
    assert concept_phrase("every car") == "car"
    assert concept_phrase("All of the  people.") == "people"
    assert concept_phrase("each") == "each"


def test_sam3_refuses_a_checkpoint_that_names_code(sam3_models, tmp_path):
    import shutil

    _, folder = sam3_models["present"]
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    config = json.loads((copy / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.Model"}
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="names code of its own"):
        load_backend("sam3", str(copy), "cpu")
    (copy / "config.json").write_text(json.dumps({"model_type": "sam2_video"}))
    with pytest.raises(UserError, match="not SAM 3 video"):
        load_backend("sam3", str(copy), "cpu")


def test_sam3_gated_hub_repo_says_how_to_get_access(monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    def gated(*args, **kwargs):
        error = GatedRepoError.__new__(GatedRepoError)  # as the hub raises it for a gated repo without access or token
        Exception.__init__(error, "401 Client Error: Cannot access gated repo")
        raise error

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    with pytest.raises(UserError) as caught:
        load_backend("sam3", "facebook/sam3", "cpu")
    message = str(caught.value)
    assert "\n" not in message and "gated" in message and "https://huggingface.co/facebook/sam3" in message
    assert "hf auth login" in message and "HF_TOKEN" in message


def test_sam3_fixture_check_sh():
    """The fixture's own acceptance check: `rvos segment … --backend sam3` against transformers' stored outputs
    (positive: "a red square", one object; negative: "an elephant", none)."""
    folder = require_shared(FIXTURE, "the SAM 3 video fixture (../shared/fixtures/sam3-video-tiny)")
    done = subprocess.run(["bash", str(folder / "check.sh"), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("-> PASS") == 2, done.stdout
