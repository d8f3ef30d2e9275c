"""Where the time goes: forward hooks that add up seconds per SAM 2 component; the device options the
SAM 2 benchmarks share (`--device cuda` runs them on a GPU and names their result `..._cuda.json`)."""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
REFDAVIS = ROOT.parent / "shared" / "data" / "refdavis-mini3"
COMPONENTS = {"image_encoder": "image_encoder", "memory_attention": "memory_attention",
              "mask_decoder": "sam_mask_decoder", "memory_encoder": "memory_encoder"}


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--data", type=Path, default=REFDAVIS, help="a Ref-DAVIS-style folder (JPEGImages/, Annotations/)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")


def result_path(args: argparse.Namespace, name: str) -> Path:
    suffix = "" if args.device == "cpu" else "_" + torch.device(args.device).type
    args.results.mkdir(parents=True, exist_ok=True)
    return args.results / f"{name}{suffix}.json"


def device_name(device: str) -> str:
    return "cpu" if device == "cpu" else torch.cuda.get_device_name(torch.device(device))


def autocast(device: str, dtype: torch.dtype | None):
    return torch.autocast(torch.device(device).type, dtype=dtype) if dtype else contextlib.nullcontext()


def synchronize() -> None:
    """GPU work is asynchronous: wait for it before reading a clock (nothing to wait for on a CPU)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(model, totals) -> list:
    """Add each component's seconds to `totals` (a defaultdict(float)); returns the hook handles."""
    handles = []

    def start(starts):
        synchronize()
        starts.append(time.perf_counter())

    def stop(starts, name):
        synchronize()
        totals[name] += time.perf_counter() - starts.pop()

    for name, attribute in COMPONENTS.items():
        module, starts = getattr(model, attribute), []
        handles.append(module.register_forward_pre_hook(lambda m, a, s=starts: start(s)))
        handles.append(module.register_forward_hook(lambda m, a, o, s=starts, n=name: stop(s, n)))
    return handles


def timed_tracking(tracker, video, prompts, keyframes, totals, frames: int) -> tuple[dict, float, dict]:
    """One tracking run: (frame → masks, seconds, seconds per frame by component); `totals` restarts after."""
    synchronize()
    start = time.perf_counter()
    masks = {f.frame_index: f.masks for f in tracker.track(video, prompts, keyframes)}
    synchronize()
    seconds = time.perf_counter() - start
    parts = {k: round(v / frames, 4) for k, v in totals.items()}
    totals.clear()
    return masks, seconds, parts
