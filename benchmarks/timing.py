"""Where the time goes: forward hooks that add up seconds per SAM 2 component."""

from __future__ import annotations

import time

COMPONENTS = {"image_encoder": "image_encoder", "memory_attention": "memory_attention",
              "mask_decoder": "sam_mask_decoder", "memory_encoder": "memory_encoder"}


def timed(model, totals) -> list:
    """Add each component's seconds to `totals` (a defaultdict(float)); returns the hook handles."""
    handles = []
    for name, attribute in COMPONENTS.items():
        module, starts = getattr(model, attribute), []
        handles.append(module.register_forward_pre_hook(lambda m, a, s=starts: s.append(time.perf_counter())))
        handles.append(module.register_forward_hook(
            lambda m, a, o, s=starts, n=name: totals.__setitem__(n, totals[n] + time.perf_counter() - s.pop())))
    return handles


def timed_tracking(tracker, video, prompts, keyframes, totals, frames: int) -> tuple[dict, float, dict]:
    """One tracking run: (frame → masks, seconds, seconds per frame by component); `totals` restarts after."""
    start = time.perf_counter()
    masks = {f.frame_index: f.masks for f in tracker.track(video, prompts, keyframes)}
    seconds = time.perf_counter() - start
    parts = {k: round(v / frames, 3) for k, v in totals.items()}
    totals.clear()
    return masks, seconds, parts
