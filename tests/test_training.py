"""Fine-tuning: synthetic referring videos, the training loop (resume, LoRA merge, export), data sources."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from agent.cli import main
from agent.evaluation.datasets import read_dataset
from agent.training.config import load_config
from agent.training.data import ReferringImages, VideoClips
from agent.training.model import Sa2VAForTraining, Trainable
from agent.training.synthetic import COLOURS, generate
from agent.training.trainer import train


def test_synthetic_videos_are_deterministic_and_exact(tmp_path):
    a, b = generate(tmp_path / "a", 6, seed=3), generate(tmp_path / "b", 6, seed=3)
    assert (a / "meta_expressions.json").read_text() == (b / "meta_expressions.json").read_text()
    assert generate(tmp_path / "c", 6, seed=4).joinpath("meta_expressions.json").read_text() != (a / "meta_expressions.json").read_text()
    dataset = read_dataset(a)
    assert len(dataset.expressions) == 12 and all(e.category for e in dataset.expressions)
    for first, second in zip(dataset.expressions[::2], dataset.expressions[1::2]):
        assert first.video == second.video and first.text != second.text  # the pair is told apart
        masks = [first.gt(0), second.gt(0)]
        assert all(m.any() for m in masks) and not (masks[0] & masks[1]).any()
    for expression in dataset.expressions:
        words = expression.text.split()
        if expression.category == "colour":
            frame = np.array(Image.open(expression.frame_paths()[0]))
            mask = expression.gt(0)
            inner = mask & np.roll(mask, 2, 0) & np.roll(mask, -2, 0) & np.roll(mask, 2, 1) & np.roll(mask, -2, 1)
            assert np.abs(frame[inner].mean(0) - COLOURS[words[1]]).max() < 25  # the mask covers the named colour


def test_a_clip_asks_about_several_objects_in_one_conversation(tmp_path):
    from agent.backends.sa2va.spec import load_sa2va
    from agent.training.tiny import build_tiny_sa2va

    clips = VideoClips(read_dataset(generate(tmp_path / "videos", 2, seed=3)).expressions, frames=2, keyframes=2, referrals=3)
    clip = clips.sample(__import__("random").Random(0))
    assert len(clip.referrals) == 2  # the video has two expressions
    assert clip.referrals[0].expression != clip.referrals[1].expression and clip.masks.shape[:2] == (2, 2)
    assert clip.masks[:, 0].any((1, 2)).all() and not (clip.masks[:, 0] & clip.masks[:, 1]).any()
    backend = load_sa2va(str(build_tiny_sa2va(tmp_path / "tiny")), "cpu", dtype="float32")
    model = Sa2VAForTraining(backend.grounder, backend.tracker, Trainable(lora_rank=0))
    full, labels, positions = model.conversation(clip)
    tokenizer = backend.grounder.tokenizer
    text = tokenizer.decode(full["input_ids"][0])
    assert all(r.expression in text for r in clip.referrals) and text.count("[SEG]") == 2
    answered = tokenizer.decode(labels[0][labels[0] != -100])
    assert answered.count("[SEG]") == 2 and not any(r.expression in answered for r in clip.referrals)  # answers only
    assert len(positions) == 2 and positions[0] < positions[1]
    losses = model(clip)
    assert all(torch.isfinite(v) for v in losses.values())


def test_clips_keep_to_frames_annotated_for_every_referral(tmp_path):
    from agent.errors import UserError
    from agent.evaluation.datasets.base import Expression

    frames = next((generate(tmp_path / "v", 1, seed=3) / "JPEGImages").iterdir())
    names = sorted(p.stem for p in frames.iterdir())
    mask = np.ones((112, 112), bool)

    def annotated_on(*indices):
        return lambda i: mask if i in indices else None

    a = Expression("v", "0", "a", frames, names, gt=annotated_on(2, 5, 6))
    b = Expression("v", "1", "b", frames, names, gt=annotated_on(5, 6, 7))
    clip = VideoClips([a, b], frames=4, keyframes=2, referrals=2).sample(__import__("random").Random(0))
    assert clip.masks.shape == (2, 2, 112, 112)  # frames 5 and 6 only
    lonely = Expression("v", "2", "c", frames, names, gt=annotated_on(0))
    with pytest.raises(UserError, match="referrals: 1"):
        VideoClips([a, lonely], frames=2, keyframes=1, referrals=2).sample(__import__("random").Random(0))


def test_rvos_synth_writes_a_dataset_once(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["synth", str(out), "--videos", "2", "--frames", "4"]) == 0
    assert len(read_dataset(out).expressions) == 4
    assert main(["synth", str(out), "--videos", "2"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_training_config_errors_are_clear(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: tiny\nstepz: 3\n")
    assert main(["train", str(bad)]) == 2
    assert "stepz" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "none.yaml")]) == 2
    assert "not found" in capsys.readouterr().err


def tiny_config(tmp_path, name, **values):
    config = tmp_path / f"{name}.yaml"
    body = {
        "model": "tiny", "out": str(tmp_path / name), "steps": 6, "save_every": 2, "log_every": 1, "frames": 2,
        "keyframes": 2, "lr": 1e-3, "device": "cpu", "data": [{"format": "synthetic", "videos": 6, "seed": 5}],
        "trainable": {"lora_rank": 4},
    }
    body.update(values)
    config.write_text(json.dumps(body))  # JSON is YAML
    return load_config(config)


def test_training_resumes_where_it_stopped_and_exports_merged(tmp_path):
    straight = train(tiny_config(tmp_path, "straight"), progress=False)
    cut = tiny_config(tmp_path, "cut")
    first = train(cut, progress=False, stop_after=3)
    assert first.steps == 3 and not first.checkpoint.exists()
    resumed = train(cut, progress=False)
    assert resumed.resumed_from == 3
    a = load_file(straight.out / "state" / "trainable.safetensors")
    b = load_file(resumed.out / "state" / "trainable.safetensors")
    assert a.keys() == b.keys() and any("lora_" in k for k in a)
    for key in a:
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), atol=1e-5)
    log = [json.loads(line) for line in (resumed.out / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log][-3:] == [4, 5, 6] and (resumed.out / "loss.png").stat().st_size > 0

    exported = load_file(resumed.checkpoint / "model.safetensors")
    initial = load_file(resumed.out / "init" / "model.safetensors")
    assert exported.keys() == initial.keys()  # LoRA merged: the official key set, no adapter tensors
    q_proj = "model.model.language_model.layers.0.self_attn.q_proj.weight"
    assert not np.allclose(exported[q_proj].numpy(), initial[q_proj].numpy())
    assert np.allclose(exported["model.model.visual.blocks.0.mlp.up_proj.weight"].numpy(),
                       initial["model.model.visual.blocks.0.mlp.up_proj.weight"].numpy())  # frozen by default


def test_trained_checkpoint_runs_with_rvos_segment(tmp_path):
    result = train(tiny_config(tmp_path, "run", steps=2), progress=False)
    video = generate(tmp_path / "video", 1, seed=9)
    frames = next((video / "JPEGImages").iterdir())
    cmd = [sys.executable, "-m", "agent", "segment", str(frames), "the red circle", "--out", str(tmp_path / "out"),
           "--backend", "sa2va", "--model", str(result.checkpoint), "--answer", "Sure, [SEG].", "--mode", "direct"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert len(saved["frames"]) == 8 and [o["id"] for o in saved["objects"]] == [1]


def coco_files(tmp_path):
    """One image, one square annotated as a polygon, one referring expression for it."""
    images = tmp_path / "images"
    images.mkdir()
    frame = np.full((60, 80, 3), 60, dtype=np.uint8)
    frame[10:30, 20:50] = COLOURS["red"]
    Image.fromarray(frame).save(images / "0001.jpg")
    instances = {
        "images": [{"id": 1, "file_name": "0001.jpg", "width": 80, "height": 60}],
        "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 600, "bbox": [20, 10, 30, 20],
                         "segmentation": [[20, 10, 50, 10, 50, 30, 20, 30]]}],
        "categories": [{"id": 1, "name": "square"}],
    }
    refs = [{"image_id": 1, "ann_id": 7, "split": "train", "sentences": [{"sent": "the red square"}]}]
    (tmp_path / "instances.json").write_text(json.dumps(instances))
    (tmp_path / "refs.json").write_text(json.dumps(refs))
    return tmp_path / "instances.json", tmp_path / "refs.json", images


def test_referring_images_are_one_frame_clips(tmp_path):
    instances, refs, images = coco_files(tmp_path)
    clip = ReferringImages(instances, refs, images).sample(__import__("random").Random(0))
    assert [r.expression for r in clip.referrals] == ["the red square"] and len(clip.frames) == 1 and clip.keyframes == [0]
    assert clip.masks.shape == (1, 1, 60, 80) and clip.masks[0, 0, 12:28, 22:48].all() and clip.masks.sum() < 700
    data = [{"format": "refcoco", "instances": str(instances), "refs": str(refs), "images": str(images)}]
    result = train(tiny_config(tmp_path, "images", steps=2, data=data), progress=False)
    assert result.steps == 2 and np.isfinite(result.last_losses["loss"])
