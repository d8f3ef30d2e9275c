"""How fast does the tiny random SAM 2 learn to pick one object by a prompt token? (No VLM.)

A diagnostic for the learning issue: the tiny SAM 2 of `rvos train`'s tiny model (image encoder
frozen, as in training) is trained alone on one-frame clips of generated videos, prompted through
the same language-token path as Sa2VA's `[SEG]`, with an oracle code instead of the VLM: a learned
bag of the expression's content words (std `--code-std` at init). Two runs:
- `foreground`: the target is every object in the frame (the code carries nothing needed);
- `selection`: the target is the referred object only.
With `--pair`, a step prompts both objects of the frame's pair at once (one token each), as
`rvos train` does with `referrals: 2`; `--contrasts` restricts the generated pairs.

    python benchmarks/tiny_sam2_selection.py [--steps 5000] [--pair] [--contrasts colour]

Adds its runs to benchmarks/results/tiny_sam2_selection.json (keyed by task, pairing, contrasts).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from agent.backends.sa2va.spec import load_sa2va
from agent.evaluation.datasets import read_dataset
from agent.evaluation.datasets.base import Expression
from agent.training.model import Sa2VAForTraining, Trainable, dice_loss, mask_targets
from agent.training.synthetic import CONTRASTS, generate, vocabulary
from agent.training.tiny import build_tiny_sa2va
from agent.writers import read_palette_png

RESULTS = Path(__file__).resolve().parent / "results"
FUNCTION_WORDS = {"the", "one", "that", "on"}


class OracleCode(torch.nn.Module):
    """A learned vector per content word; an expression's code is the sum over its words."""

    def __init__(self, dim: int, std: float):
        super().__init__()
        self.words = sorted(set(vocabulary()) - FUNCTION_WORDS)
        self.table = torch.nn.Parameter(torch.randn(len(self.words), dim) * std)

    def forward(self, expression: str) -> torch.Tensor:
        ids = [self.words.index(w) for w in re.findall(r"[a-z]+", expression.lower()) if w in self.words]
        return self.table[ids].sum(0)[None, None]  # [1 object, 1 token, C]


def iou(logits: torch.Tensor, target: torch.Tensor) -> float:
    predicted, truth = logits > 0, target > 0.5
    return float((predicted & truth).sum() / ((predicted | truth).sum() + 1e-6))


def run(task: str, checkpoint: Path, train_root: Path, heldout_root: Path, steps: int, std: float, pair: bool = False) -> dict:
    torch.manual_seed(0)
    backend = load_sa2va(str(checkpoint), "cpu", dtype="float32")
    model = Sa2VAForTraining(backend.grounder, backend.tracker, Trainable(lora_rank=0)).train()
    tracker = model.tracker
    code = OracleCode(tracker.model.hidden_dim, std)
    params = [p for p in tracker.model.parameters() if p.requires_grad] + list(code.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-3)

    def predict(sample: Sample):
        """Logits and targets [objects, S, S]; the sample's own expression first."""
        referred = [sample.expression, *(sample.partners if pair else [])]
        codes = torch.cat([code(e.text) for e in referred])
        logits = tracker.clip_logits([sample.frame], {0: codes})[0]
        return logits, mask_targets(np.stack([sample.target(task, e) for e in referred]), logits.shape[-1], logits.device)

    train_expressions = read_dataset(train_root).expressions
    curve, recent = [], []
    started = time.monotonic()
    for step in range(steps):
        logits, target = predict(Sample.draw(train_expressions, random.Random(step)))
        loss = 2 * F.binary_cross_entropy_with_logits(logits, target) + 0.5 * dice_loss(logits, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        recent.append(iou(logits.detach(), target))
        if (step + 1) % 500 == 0:
            curve.append({"step": step + 1, "train_iou": round(sum(recent) / len(recent), 3)})
            recent = []
            print(task, curve[-1], flush=True)
    seconds = time.monotonic() - started
    heldout = read_dataset(heldout_root).expressions
    by_category = defaultdict(list)
    with torch.no_grad():
        for n in range(200):
            sample = Sample.draw(heldout, random.Random(10_000 + n))
            logits, target = predict(sample)
            by_category[sample.expression.category].append(iou(logits[0], target[0]))
    scores = {k: round(sum(v) / len(v), 3) for k, v in sorted(by_category.items())}
    everything = [x for v in by_category.values() for x in v]
    return {"task": task, "pair": pair, "steps": steps, "train_seconds": round(seconds, 1), "curve": curve,
            "heldout_iou": round(sum(everything) / len(everything), 3), "heldout_iou_by_contrast": scores}


@dataclass
class Sample:
    """One annotated frame of a referring expression."""

    expression: Expression
    index: int
    partners: list[Expression]  # the video's other expressions

    @classmethod
    def draw(cls, expressions: list[Expression], rng: random.Random) -> "Sample":
        expression = rng.choice(expressions)
        partners = [e for e in expressions if e.video == expression.video and e is not expression]
        return cls(expression, rng.randrange(len(expression.frame_names)), partners)

    @property
    def frame(self) -> Image.Image:
        return Image.open(self.expression.frame_paths()[self.index]).convert("RGB")

    def target(self, task: str, expression: Expression) -> np.ndarray:
        if task == "selection":
            return expression.gt(self.index)
        root = self.expression.frames_dir.parent.parent  # <root>/JPEGImages/<video>
        name = self.expression.frame_names[self.index]
        return read_palette_png(root / "Annotations" / self.expression.video / f"{name}.png") > 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--foreground-steps", type=int, default=1500)
    parser.add_argument("--code-std", type=float, default=1.0)
    parser.add_argument("--pair", action="store_true", help="both objects of the pair in every step")
    parser.add_argument("--contrasts", nargs="+", default=list(CONTRASTS))
    parser.add_argument("--out", default="/tmp/rvos-selection")
    args = parser.parse_args()
    out = Path(args.out)
    checkpoint = out / "init"
    if not (checkpoint / "config.json").is_file():
        build_tiny_sa2va(checkpoint)
    kind = "-".join(args.contrasts)
    train_root, heldout_root = out / f"train-{kind}", out / f"heldout-{kind}"
    if not (train_root / "meta_expressions.json").is_file():
        generate(train_root, 300, seed=1, contrasts=args.contrasts)
    if not (heldout_root / "meta_expressions.json").is_file():
        generate(heldout_root, 30, seed=999, contrasts=args.contrasts)
    results = RESULTS / "tiny_sam2_selection.json"
    record = json.loads(results.read_text()) if results.is_file() else {"runs": {}}
    for task, steps in (("foreground", args.foreground_steps), ("selection", args.steps)):
        if steps > 0:
            outcome = run(task, checkpoint, train_root, heldout_root, steps, args.code_std, args.pair)
            key = f"{task}{'/pair' if args.pair else ''}/{kind}"
            record["runs"][key] = {"code_std": args.code_std, "contrasts": args.contrasts, **outcome}
    RESULTS.mkdir(exist_ok=True)
    results.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
