"""sam2_speedup_vs_stock: the `sam2` package's SAM2VideoPredictor against our streaming tracker.

Same random weights (time does not depend on values), same 854×480 frames, one object prompted
by a mask on frame 0. Both run in float32 (the stock predictor's CPU mode) and under CPU bfloat16
autocast (`--dtype bfloat16`: ours adds a bf16 memory cross-attention, see
agent/tracker/memory_attention.py). Reports seconds per frame, where the time goes, and how far
the outputs are from the stock float32 run, at logit 0 and at each frame's median stock logit
(a threshold that splits the frame in halves: with random weights masks at 0 can be near empty).
The object-score head's bias is set to say "present", else random weights drop the object after
frame 0 and every later mask is empty. `--device cuda` runs both on a GPU (bfloat16 under CUDA
autocast, as the stock predictor's own examples run it) after one warm-up run each. Run:
python benchmarks/sam2_vs_stock.py [--frames N] [--config configs/sam2/sam2_hiera_t.yaml] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from agent.grounder.protocol import ObjectPrompt
from agent.tracker.sam2_language import build_language_sam2
from agent.tracker.sam2_stream import SAM2StreamTracker
from agent.video import VideoSource
from agent.writers import read_palette_png
from timing import add_device_arguments, device_name, autocast, result_path, synchronize, timed


def run_stock(stock, frames: Path, mask: np.ndarray, dtype) -> tuple[float, dict]:
    with torch.inference_mode(), autocast(str(stock.device), dtype):
        synchronize()
        start = time.perf_counter()
        state = stock.init_state(str(frames))
        stock.add_new_mask(state, 0, 1, mask)
        logits = {t: m[0, 0].float().cpu().numpy() for t, _, m in stock.propagate_in_video(state)}
    return time.perf_counter() - start, logits


def run_ours(model, frames: Path, mask: np.ndarray, dtype, device: str) -> tuple[float, dict, dict]:
    video = VideoSource.open(frames)
    width, height = video.size
    totals: dict[str, float] = defaultdict(float)
    handles = timed(model, totals)
    tracker = SAM2StreamTracker(model, device=device, autocast_dtype=dtype)
    logits = {}
    synchronize()
    start = time.perf_counter()
    for frame in tracker.track_logits(video, [ObjectPrompt(1, 0, mask=mask)], {}):
        logits[frame.frame_index] = frame.resized(1, height, width).cpu().numpy()
    seconds = time.perf_counter() - start
    for handle in handles:
        handle.remove()
    return seconds, logits, dict(totals)


def off_boundary(reference: np.ndarray, other: np.ndarray, reach: int = 2) -> int:
    """Differing pixels farther than `reach` pixels from the reference mask's boundary."""
    import cv2

    mask = reference.astype(np.uint8)
    kernel = np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)
    near_boundary = cv2.dilate(mask, kernel) != cv2.erode(mask, kernel)
    return int(np.count_nonzero((reference != other) & ~near_boundary))


def agreement(reference: dict, logits: dict) -> dict:
    """Pixels on the other side of 0 and of the reference's median logit (worst frame), and how many
    of them lie farther than 2 pixels from the reference mask's boundary."""
    at_zero, at_median, away = [], [], []
    for t, ref in reference.items():
        median = float(np.median(ref))
        for differing, threshold in ((at_zero, 0.0), (at_median, median)):
            differing.append(int(np.count_nonzero((ref > threshold) != (logits[t] > threshold))))
            away.append(off_boundary(ref > threshold, logits[t] > threshold))
    return {"max_differing_pixels_at_0": max(at_zero), "max_differing_pixels_at_median": max(at_median),
            "max_differing_pixels_beyond_2px_of_a_boundary": max(away),
            "pixels_per_frame": int(next(iter(reference.values())).size)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--config", default="configs/sam2/sam2_hiera_t.yaml")
    parser.add_argument("--video", default="blackswan")
    add_device_arguments(parser)
    args = parser.parse_args()
    torch.manual_seed(0)
    from sam2.build_sam import build_sam2_video_predictor

    stock = build_sam2_video_predictor(args.config, ckpt_path=None, device=args.device,
                                       hydra_overrides_extra=["++model.fill_hole_area=0"])
    stock.eval()
    with torch.no_grad():  # random weights say "no object" after frame 0: every mask would be empty
        head = stock.sam_mask_decoder.pred_obj_score_head
        (head.layers[-1] if hasattr(head, "layers") else head).bias.fill_(10.0)
    overrides = {"binarize_mask_from_pts_for_mem_enc": True}  # what the stock predictor's builder sets
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        node = OmegaConf.load(str(resources.files("sam2") / args.config))
        node.model = OmegaConf.merge(node.model, overrides)
        yaml = Path(tmp) / "config.yaml"
        OmegaConf.save(node, yaml)
        ours_model, missing, unexpected = build_language_sam2(yaml, stock.state_dict())
        assert not missing and not unexpected, (missing, unexpected)
        ours_model.keep_logits_of_absent_objects = False  # stock behaviour for this comparison

        frames = Path(tmp) / "frames"
        frames.mkdir()
        source = VideoSource.open(args.data / "JPEGImages" / args.video)
        for i, image in source.frames(range(args.frames)):
            image.save(frames / f"{i:05d}.jpg", quality=95)
        mask = read_palette_png(args.data / "Annotations" / args.video / "00000.png") == 1
        if args.device != "cpu":  # CUDA's start-up (kernels, cuBLAS handles) kept out of the timings
            run_stock(stock, frames, mask, torch.bfloat16)
            run_ours(ours_model, frames, mask, torch.bfloat16, args.device)

        reference = None
        for precision, dtype in (("float32", None), ("bfloat16", torch.bfloat16)):
            stock_s, stock_logits = run_stock(stock, frames, mask, dtype)
            ours_s, ours_logits, where = run_ours(ours_model, frames, mask, dtype, args.device)
            reference = stock_logits if reference is None else reference
            results[precision] = {
                "stock_s_per_frame": round(stock_s / args.frames, 3), "ours_s_per_frame": round(ours_s / args.frames, 3),
                "ours_vs_stock_float32": agreement(reference, ours_logits),
                "stock_vs_stock_float32": agreement(reference, stock_logits),
                "ours_seconds_per_frame_by_component": {k: round(v / args.frames, 3) for k, v in where.items()},
            }
            print(precision, json.dumps(results[precision]), flush=True)

    stock_s = results["float32"]["stock_s_per_frame"]
    result = {
        "benchmark": "sam2_speedup_vs_stock", "config": args.config, "frames": args.frames, "frame_size": list(source.size),
        "device": device_name(args.device), "threads": torch.get_num_threads(),
        # the stock predictor as it runs on a CPU (float32) against ours with --dtype bfloat16
        "speedup": round(stock_s / results["bfloat16"]["ours_s_per_frame"], 3),
        "speedup_both_float32": round(stock_s / results["float32"]["ours_s_per_frame"], 3),
        "speedup_both_bfloat16": round(results["bfloat16"]["stock_s_per_frame"] / results["bfloat16"]["ours_s_per_frame"], 3),
        **results,
    }
    print(json.dumps(result, indent=1))
    result_path(args, "sam2_speedup_vs_stock").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
