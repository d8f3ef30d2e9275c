"""lite_fps: frames per second of the lite backend on the shared videos (grounding, tracking and
writing predictions; model loading excluded), with J&F, through `rvos eval`'s runner.
Run: python benchmarks/lite_fps.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from agent.backends import load_backend
from agent.evaluation.runner import EvalJob, run_evaluation

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "refdavis-mini3"


def main() -> None:
    backend = load_backend("lite")
    with tempfile.TemporaryDirectory() as tmp:
        report = run_evaluation(EvalJob(str(SHARED), "generic", None, "lite", tmp), progress=False, backend=backend)
    result = {
        "benchmark": "lite_fps", "videos": len(report["expressions"]), "frame_size": [854, 480],
        "seconds_per_frame": report["seconds_per_frame"], "frames_per_second": round(1 / report["seconds_per_frame"], 2),
        "JF": round(report["overall"]["JF"], 4),
        "per_video": {k: {"JF": round(v["JF"], 4), "seconds": v["seconds"], "frames": v["frames"]} for k, v in report["expressions"].items()},
    }
    print(json.dumps(result, indent=1))
    (ROOT / "benchmarks" / "results" / "lite_fps.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
