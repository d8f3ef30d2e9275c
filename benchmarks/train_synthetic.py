"""A longer training run of the tiny Sa2VA from scratch on generated videos, scored on held-out ones.

    python benchmarks/train_synthetic.py [--steps 6000] [--contrasts colour shape motion size position]

Writes benchmarks/results/train_synthetic.json (J&F before/after, per contrast, right-object fractions,
seconds) and train_synthetic_loss.png (the loss curves); `train_synthetic_<contrasts>.*` when
`--contrasts` restricts the pairs. Held-out videos
are scored twice: every frame prompted (as the training clips are) and with the default 5 keyframes,
the other frames tracked through SAM 2's memory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from agent.training.config import load_config
from agent.training.synthetic import CONTRASTS, generate
from agent.training.trainer import train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.training_score import score_checkpoint  # noqa: E402  (shared with tests/test_learning.py)

RESULTS = Path(__file__).resolve().parent / "results"
FRAMES = 8  # per generated video


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--videos", type=int, default=400)
    parser.add_argument("--contrasts", nargs="+", default=list(CONTRASTS))
    parser.add_argument("--out", default="/tmp/rvos-train-bench")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    config = out / "train.yaml"
    config.write_text(json.dumps({
        "model": "tiny", "out": str(out / "run"), "steps": args.steps, "frames": 2, "keyframes": 2, "referrals": 2,
        "lr": 1e-3, "save_every": 500, "log_every": 50, "device": "cpu",
        "data": [{"format": "synthetic", "videos": args.videos, "seed": 1, "contrasts": args.contrasts}],
        "trainable": {"lora_rank": 0, "vision_encoder": True},
    }))
    heldout = generate(out / "heldout", 30, seed=999, length=FRAMES, contrasts=args.contrasts)
    started = time.monotonic()
    result = train(load_config(config))
    seconds = time.monotonic() - started
    record = {"steps": args.steps, "contrasts": args.contrasts, "train_seconds": round(seconds, 1), "heldout_expressions": 60}
    for keyframes, name in ((FRAMES, "every_frame_prompted"), (5, "five_keyframes")):
        record[name] = {
            "untrained": score_checkpoint(result.out / "init", heldout, out / f"before-{keyframes}", keyframes=keyframes),
            "trained": score_checkpoint(result.checkpoint, heldout, out / f"after-{keyframes}", keyframes=keyframes),
        }
    RESULTS.mkdir(exist_ok=True)
    name = "train_synthetic" if set(args.contrasts) == set(CONTRASTS) else f"train_synthetic_{'-'.join(args.contrasts)}"
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=1))
    shutil.copyfile(result.out / "loss.png", RESULTS / f"{name}_loss.png")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
