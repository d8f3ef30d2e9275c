"""Proof that training learns (`pytest -k learn`): a tiny Sa2VA, random init, trained on the CPU on
generated videos, segments held-out generated videos far better than before training."""

import json

from agent.training.config import load_config
from agent.training.evaluate import score_checkpoint
from agent.training.synthetic import generate
from agent.training.trainer import train

LEARN_STEPS = 800


def test_learn_tiny_sa2va_from_scratch(tmp_path):
    config = tmp_path / "learn.yaml"
    config.write_text(json.dumps({
        "model": "tiny", "out": str(tmp_path / "run"), "steps": LEARN_STEPS, "frames": 2, "keyframes": 2, "lr": 1e-3,
        "save_every": LEARN_STEPS, "log_every": 50, "device": "cpu",
        "data": [{"format": "synthetic", "videos": 300, "seed": 1}],
        "trainable": {"lora_rank": 0, "vision_encoder": True},  # from scratch: the whole language model trains
    }))
    heldout = generate(tmp_path / "heldout", 10, seed=999)  # other seed: unseen scenes
    result = train(load_config(config), progress=False)
    before = score_checkpoint(result.out / "init", heldout, tmp_path / "before")["JF"]
    trained = score_checkpoint(result.checkpoint, heldout, tmp_path / "after")
    after = trained["JF"]
    print(f"held-out J&F: untrained {before:.3f} → trained {after:.3f}; right object of the pair: {trained['pair_choice']}")
    log = [json.loads(line) for line in (result.out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["dice"] < log[0]["dice"] and log[-1]["lm"] < 0.1 * log[0]["lm"]
    assert after >= before + 0.15 and after >= 0.2
