"""correction_time: how long a click's correction takes against answering again from scratch, lite backend,
on the shared videos. Per video: `ask` (grounding + tracking every frame), then one correction on the frame
whose mask is worst (a click on its largest error region: negative where the mask covers something else,
positive where it misses the object), then the corrected prompt tracked over the whole video (both ways),
as a full re-run would. Reports seconds, frames re-tracked and J before / after. Run: python benchmarks/correction_time.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from agent.assistant import Assistant
from agent.backends.lite.tracker import interior_point
from agent.evaluation.metrics import region_similarity
from agent.writers import read_palette_png

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "refdavis-mini3"


def largest_region(mask: np.ndarray) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
    return labels == 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax()) if count > 1 else mask


def mean_j(reply, truth) -> float:
    return float(np.mean([region_similarity(reply.masks(t).get(1, np.zeros_like(g)), g) for t, g in enumerate(truth)]))


def main() -> None:
    assistant = Assistant.load("lite")
    meta = json.loads((SHARED / "meta_expressions.json").read_text())["videos"]
    results = {}
    for video, info in meta.items():
        truth = [read_palette_png(p) == 1 for p in sorted((SHARED / "Annotations" / video).glob("*.png"))]
        session = assistant.open(SHARED / "JPEGImages" / video, progress=False)
        start = time.perf_counter()
        first = session.ask(info["expressions"]["0"]["exp"], mode="direct")
        ask_s = time.perf_counter() - start
        j = [region_similarity(first.masks(t)[1], g) for t, g in enumerate(truth)]
        frame = int(np.argmin(j))
        extra, missed = largest_region(first.masks(frame)[1] & ~truth[frame]), largest_region(truth[frame] & ~first.masks(frame)[1])
        positive = missed.sum() > extra.sum()
        click = interior_point(missed if positive else extra)
        start = time.perf_counter()
        corrected = session.add_points(frame, [click], [int(positive)], object_id=1)
        correction_s = time.perf_counter() - start
        low, high = corrected.trace[-1].detail["frames"]
        prompt = session.objects.objects[1].prompts[frame]
        start = time.perf_counter()
        for _ in assistant.backend.tracker.track(session.video, [prompt], {}):
            pass
        full_s = time.perf_counter() - start
        results[video] = {
            "frames": len(truth), "ask_s": round(ask_s, 2), "click_frame": frame, "click": "+" if positive else "-",
            "correction_s": round(correction_s, 2), "changed_frames": [low, high], "full_retrack_s": round(full_s, 2),
            "J_before": round(mean_j(first, truth), 4), "J_after": round(mean_j(corrected, truth), 4),
        }
        print(video, json.dumps(results[video]), flush=True)
    result = {"benchmark": "correction_time", "backend": "lite", "frame_size": [854, 480], "videos": results,
              "correction_s": round(sum(r["correction_s"] for r in results.values()), 2),
              "full_retrack_s": round(sum(r["full_retrack_s"] for r in results.values()), 2),
              "ask_s": round(sum(r["ask_s"] for r in results.values()), 2)}
    print(json.dumps(result, indent=1))
    (ROOT / "benchmarks" / "results" / "correction_time.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
