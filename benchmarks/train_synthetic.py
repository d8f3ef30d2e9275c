"""A longer training run of the tiny Sa2VA from scratch on generated videos, scored on held-out ones.

    python benchmarks/train_synthetic.py [--steps 3000] [--out /tmp/rvos-train-bench]

Writes benchmarks/results/train_synthetic.json (J&F before/after, per contrast, right-object
fractions, seconds) and benchmarks/results/train_synthetic_loss.png (the loss curves).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from agent.training.config import load_config
from agent.training.evaluate import score_checkpoint
from agent.training.synthetic import generate
from agent.training.trainer import train

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--videos", type=int, default=400)
    parser.add_argument("--out", default="/tmp/rvos-train-bench")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    config = out / "train.yaml"
    config.write_text(json.dumps({
        "model": "tiny", "out": str(out / "run"), "steps": args.steps, "frames": 2, "keyframes": 2, "lr": 1e-3,
        "save_every": 500, "log_every": 50, "device": "cpu",
        "data": [{"format": "synthetic", "videos": args.videos, "seed": 1}],
        "trainable": {"lora_rank": 0, "vision_encoder": True},
    }))
    heldout = generate(out / "heldout", 30, seed=999)
    started = time.monotonic()
    result = train(load_config(config))
    seconds = time.monotonic() - started
    before = score_checkpoint(result.out / "init", heldout, out / "before")
    after = score_checkpoint(result.checkpoint, heldout, out / "after")
    record = {"steps": args.steps, "train_seconds": round(seconds, 1), "heldout_expressions": 60,
              "untrained": before, "trained": after}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_synthetic.json").write_text(json.dumps(record, indent=1))
    shutil.copyfile(result.out / "loss.png", RESULTS / "train_synthetic_loss.png")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
