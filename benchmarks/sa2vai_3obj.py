"""sa2vai_3obj_speedup_vs_reference: Sa2VA-i's inference for three [SEG] objects through SAM 2 Hiera-L
(official architecture, random weights: time does not depend on values), 854×480 frames.

Reference behaviour (kumuji/Sa2VA-i): for each [SEG] on its own, every frame preprocessed and held at
1024², the keyframes encoded and decoded by the finetuned decoder, then a fresh SAM 2 session that encodes
every frame again to propagate that object's keyframe masks. Ours: the keyframes encoded once for the
decode and for propagation, all objects propagated in one streaming pass (each frame encoded once).
Masks must agree. Run: python benchmarks/sa2vai_3obj.py [--frames N] [--keyframes K]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from agent.backends.sa2va.inference import decoder_copy
from agent.grounder.protocol import ObjectPrompt
from agent.tracker.sa2va_i import Sa2VAiTracker
from agent.tracker.sam2_language import build_language_sam2
from agent.tracker.sam2_stream import SAM2StreamTracker
from agent.video import VideoSource
from agent.video.keyframes import select_keyframes
from timing import timed, timed_tracking

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "refdavis-mini3"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--keyframes", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, _, _ = build_language_sam2(None, {})  # official Hiera-L architecture, random weights
    model.keep_logits_of_absent_objects = False
    finetuned = decoder_copy(model.sam_mask_decoder)
    for parameter in finetuned.parameters():  # a different decoder, as a Sa2VA-i checkpoint has
        parameter.data.add_(0.01 * torch.randn_like(parameter))
    totals = defaultdict(float)
    timed(model, totals)
    tracker = Sa2VAiTracker(SAM2StreamTracker(model, normalisation="bfloat16"), finetuned)

    source = VideoSource.open(SHARED / "JPEGImages" / "car-shadow")
    video = VideoSource.open([image for _, image in source.frames(range(args.frames))])
    indices = select_keyframes(len(video), args.keyframes, "uniform-floor")
    keyframes = video.read_many(indices)
    embeddings = torch.randn(3, model.sam_prompt_embed_dim)
    prompts = [ObjectPrompt(i + 1, t, embedding=embeddings[i]) for i in range(3) for t in indices]

    ours, ours_s, ours_parts = timed_tracking(tracker, video, prompts, keyframes, totals, args.frames)
    start = time.perf_counter()
    reference = defaultdict(dict)
    for object_id in (1, 2, 3):  # everything again for each [SEG]
        held = [tracker.stream.preprocess(image) for _, image in video.frames()]  # every frame held at 1024²
        own = [p for p in prompts if p.object_id == object_id]
        masks = tracker.keyframe_masks(keyframes, own, video.size)  # keyframes encoded for the decode
        seeds = [ObjectPrompt(object_id, t, mask=masks[(object_id, t)]) for t in indices]
        for frame in tracker.stream.track(video, seeds, {}):  # a fresh session encodes every frame
            reference[frame.frame_index][object_id] = frame.masks[object_id]
        del held
    reference_s = time.perf_counter() - start
    agreement = min(float(np.mean(ours[t][i] == reference[t][i])) for t in ours for i in ours[t])
    result = {
        "benchmark": "sa2vai_3obj_speedup_vs_reference", "sam2": "Hiera-L (configs/sam2/sam2_hiera_l.yaml), 1024",
        "frames": args.frames, "keyframes": indices, "objects": 3, "frame_size": list(video.size),
        "ours_s_per_frame": round(ours_s / args.frames, 3), "reference_s_per_frame": round(reference_s / args.frames, 3),
        "speedup": round(reference_s / ours_s, 3), "min_pixel_agreement": round(agreement, 6),
        "ours_seconds_per_frame_by_part": ours_parts, "threads": torch.get_num_threads(),
        "command": f"python benchmarks/sa2vai_3obj.py --frames {args.frames} --keyframes {args.keyframes}",
    }
    print(json.dumps(result, indent=1))
    (ROOT / "benchmarks" / "results" / "sa2vai_3obj_speedup_vs_reference.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
