"""sam2_speedup_vs_stock: the `sam2` package's SAM2VideoPredictor against our streaming tracker.

Same random weights (time does not depend on values), same 854×480 frames, one object prompted
by a mask on frame 0; reports seconds per frame of each, the speed-up, and how many mask pixels
differ. Run: python benchmarks/sam2_vs_stock.py [--frames N] [--config configs/sam2/sam2_hiera_t.yaml]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from agent.grounder.protocol import ObjectPrompt
from agent.tracker.sam2_language import build_language_sam2
from agent.tracker.sam2_stream import SAM2StreamTracker
from agent.video import VideoSource
from agent.writers import read_palette_png

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "refdavis-mini3"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--config", default="configs/sam2/sam2_hiera_t.yaml")
    parser.add_argument("--video", default="blackswan")
    args = parser.parse_args()
    torch.manual_seed(0)
    from sam2.build_sam import build_sam2_video_predictor

    stock = build_sam2_video_predictor(args.config, ckpt_path=None, device="cpu",
                                       hydra_overrides_extra=["++model.fill_hole_area=0"])
    stock.eval()
    config = resources.files("sam2") / args.config
    overrides = {"binarize_mask_from_pts_for_mem_enc": True}  # what the stock predictor's builder sets
    from omegaconf import OmegaConf

    with tempfile.TemporaryDirectory() as tmp:
        node = OmegaConf.load(str(config))
        node.model = OmegaConf.merge(node.model, overrides)
        yaml = Path(tmp) / "config.yaml"
        OmegaConf.save(node, yaml)
        ours_model, missing, unexpected = build_language_sam2(yaml, stock.state_dict())
        assert not missing and not unexpected, (missing, unexpected)
        ours_model.keep_logits_of_absent_objects = False  # stock behaviour for this comparison

        frames = Path(tmp) / "frames"
        frames.mkdir()
        source = VideoSource.open(SHARED / "JPEGImages" / args.video)
        for i, image in source.frames(range(args.frames)):
            image.save(frames / f"{i:05d}.jpg", quality=95)
        mask = read_palette_png(SHARED / "Annotations" / args.video / "00000.png") == 1

        with torch.inference_mode():
            start = time.perf_counter()
            state = stock.init_state(str(frames))
            stock.add_new_mask(state, 0, 1, mask)
            theirs = {t: (m[0, 0] > 0).numpy() for t, _, m in stock.propagate_in_video(state)}
            stock_s = (time.perf_counter() - start) / args.frames

        video = VideoSource.open(frames)
        tracker = SAM2StreamTracker(ours_model)
        start = time.perf_counter()
        ours = {f.frame_index: f.masks[1] for f in tracker.track(video, [ObjectPrompt(1, 0, mask=mask)], {})}
        ours_s = (time.perf_counter() - start) / args.frames

    differing = [int(np.count_nonzero(ours[t] != theirs[t])) for t in range(args.frames)]
    result = {
        "benchmark": "sam2_speedup_vs_stock", "config": args.config, "frames": args.frames, "frame_size": list(source.size),
        "stock_s_per_frame": round(stock_s, 3), "ours_s_per_frame": round(ours_s, 3),
        "speedup": round(stock_s / ours_s, 3), "max_differing_pixels_per_frame": max(differing),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result, indent=1))
    out = ROOT / "benchmarks" / "results" / "sam2_speedup_vs_stock.json"
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
