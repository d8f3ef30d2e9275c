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
from timing import add_device_arguments, device_name, result_path, synchronize, timed, timed_tracking


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--keyframes", type=int, default=3)
    add_device_arguments(parser)
    args = parser.parse_args()
    autocast = torch.bfloat16 if args.device != "cpu" else None  # what `rvos` runs SAM 2 under on a GPU by default
    torch.manual_seed(0)
    model, _, _ = build_language_sam2(None, {})  # official Hiera-L architecture, random weights
    model.keep_logits_of_absent_objects = False
    finetuned = decoder_copy(model.sam_mask_decoder)
    for parameter in finetuned.parameters():  # a different decoder, as a Sa2VA-i checkpoint has
        parameter.data.add_(0.01 * torch.randn_like(parameter))
    totals = defaultdict(float)
    timed(model, totals)
    tracker = Sa2VAiTracker(SAM2StreamTracker(model, device=args.device, autocast_dtype=autocast, normalisation="bfloat16"), finetuned)

    source = VideoSource.open(args.data / "JPEGImages" / "car-shadow")
    video = VideoSource.open([image for _, image in source.frames(range(args.frames))])
    indices = select_keyframes(len(video), args.keyframes, "uniform-floor")
    keyframes = video.read_many(indices)
    embeddings = torch.randn(3, model.sam_prompt_embed_dim)
    prompts = [ObjectPrompt(i + 1, t, embedding=embeddings[i]) for i in range(3) for t in indices]

    if args.device != "cpu":  # CUDA's start-up kept out of the timings
        timed_tracking(tracker, video, prompts, keyframes, totals, args.frames)
    ours, ours_s, ours_parts = timed_tracking(tracker, video, prompts, keyframes, totals, args.frames)
    synchronize()
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
    synchronize()
    reference_s = time.perf_counter() - start
    agreement = min(float(np.mean(ours[t][i] == reference[t][i])) for t in ours for i in ours[t])
    result = {
        "benchmark": "sa2vai_3obj_speedup_vs_reference", "sam2": "Hiera-L (configs/sam2/sam2_hiera_l.yaml), 1024",
        "frames": args.frames, "keyframes": indices, "objects": 3, "frame_size": list(video.size),
        "ours_s_per_frame": round(ours_s / args.frames, 4), "reference_s_per_frame": round(reference_s / args.frames, 4),
        "speedup": round(reference_s / ours_s, 3), "min_pixel_agreement": round(agreement, 6),
        "ours_seconds_per_frame_by_part": ours_parts, "device": device_name(args.device), "threads": torch.get_num_threads(),
        "command": f"python benchmarks/sa2vai_3obj.py --frames {args.frames} --keyframes {args.keyframes} --device {args.device}",
    }
    print(json.dumps(result, indent=1))
    result_path(args, "sa2vai_3obj_speedup_vs_reference").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
