"""sa2va_3obj_speedup_vs_reference: three [SEG] objects through SAM 2 Hiera-L (official architecture).

Reference behaviour (the official inference): SAM 2 run from scratch for each [SEG], every frame
preprocessed and held at 1024×1024 first. Ours: one streaming pass, the image encoder run once per
frame for all objects. Random weights (time does not depend on values), the same language
embeddings, 854×480 frames; masks must be equal. Also records where the time goes.
Run: python benchmarks/sa2va_3obj.py [--frames N]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from agent.grounder.protocol import ObjectPrompt
from agent.tracker.sam2_language import build_language_sam2
from agent.tracker.sam2_stream import SAM2StreamTracker
from agent.video import VideoSource
from timing import timed, timed_tracking

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "refdavis-mini3"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=4)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, _, _ = build_language_sam2(None, {})  # official Hiera-L architecture, random weights
    totals = defaultdict(float)
    timed(model, totals)
    tracker = SAM2StreamTracker(model)
    source = VideoSource.open(SHARED / "JPEGImages" / "car-shadow", resize=None)
    frames = list(source.frames(range(args.frames)))
    video = VideoSource.open([image for _, image in frames])
    embeddings = torch.randn(3, model.sam_prompt_embed_dim)
    prompts = [ObjectPrompt(i + 1, 0, embedding=embeddings[i]) for i in range(3)]
    keyframes = {0: frames[0][1]}

    ours, ours_s, ours_parts = timed_tracking(tracker, video, prompts, keyframes, totals, args.frames)
    start = time.perf_counter()
    held = [tracker.preprocess(image) for _, image in frames]  # the reference holds every frame at 1024²
    reference = defaultdict(dict)
    for prompt in prompts:  # SAM 2 from scratch for each [SEG]
        for frame in tracker.track(video, [prompt], keyframes):
            reference[frame.frame_index][prompt.object_id] = frame.masks[prompt.object_id]
    reference_s = time.perf_counter() - start
    del held
    equal = all(np.array_equal(ours[t][i], reference[t][i]) for t in ours for i in ours[t])
    result = {
        "benchmark": "sa2va_3obj_speedup_vs_reference", "sam2": "Hiera-L (configs/sam2/sam2_hiera_l.yaml), 1024", "frames": args.frames,
        "objects": 3, "frame_size": list(video.size), "ours_s_per_frame": round(ours_s / args.frames, 3),
        "reference_s_per_frame": round(reference_s / args.frames, 3), "speedup": round(reference_s / ours_s, 3),
        "masks_equal": equal, "ours_seconds_per_frame_by_part": ours_parts, "threads": torch.get_num_threads(),
    }
    print(json.dumps(result, indent=1))
    (ROOT / "benchmarks" / "results" / "sa2va_3obj_speedup_vs_reference.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
