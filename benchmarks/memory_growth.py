"""memory_growth_300_to_3000: peak RSS of the sa2va pipeline on 3,000 frames over 300 frames.

854×480 frames generated on the fly; the Sa2VA fixture checkpoint (tiny VLM, tiny SAM 2 config,
official file layout) so 3,000 frames take minutes: what grows with length is the bookkeeping
(frames, memory bank, per-frame outputs), not the weights. Each length runs in its own process
(peak RSS is per process) through `segment()`, writers included.
Run: python benchmarks/memory_growth.py
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT.parent / "shared" / "fixtures" / "sa2va-qwen2_5-vl-tiny"


def one_run(frames: int) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from synthetic import MovingSquares

    from agent.backends.sa2va.spec import load_sa2va
    from agent.pipeline import segment

    backend = load_sa2va(str(FIXTURE / "checkpoint"), "cpu", sam2_config=FIXTURE / "sam2_tiny_test.yaml", answer="Sure, [SEG] and [SEG].")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        segment(MovingSquares(frames), "the red square and the green square", backend, Path(tmp) / "out", progress=False)
        seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"frames": frames, "peak_rss_mib": round(peak_mib, 1), "seconds": round(seconds, 1)}))


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        return one_run(int(sys.argv[2]))
    runs = {}
    for frames in (300, 3000):
        done = subprocess.run([sys.executable, __file__, "--one", str(frames)], capture_output=True, text=True, check=True)
        runs[frames] = json.loads(done.stdout.strip().splitlines()[-1])
    result = {
        "benchmark": "memory_growth_300_to_3000", "backend": "sa2va (fixture checkpoint, tiny SAM 2)", "frame_size": [854, 480],
        "objects": 2, "runs": list(runs.values()),
        "ratio": round(runs[3000]["peak_rss_mib"] / runs[300]["peak_rss_mib"], 3),
    }
    print(json.dumps(result, indent=1))
    (ROOT / "benchmarks" / "results" / "memory_growth_300_to_3000.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
