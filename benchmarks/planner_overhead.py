"""planner_overhead: what the planner costs on top of the direct path, on the shared videos with lite and
llama.cpp's server (Gemma 3 270M, local, 2 threads), one expression per video.

Per question: seconds for the direct path (ground the words, track one object) and for the planner (find
tracks up to --candidates candidates through the video, then the model's calls), and one find of the
expression's own words (what a sensible first call costs; the small model's own phrases often find nothing). Per planner call: the
seconds waiting for the model and the seconds in the tool. A 270M base model's choices are nonsense; this
measures the plumbing's cost, not answer quality. Run: python benchmarks/planner_overhead.py
(needs `make planner-server`)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from agent.assistant import Assistant
from agent.planner import PlannerConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.planner_model import ALIAS, local_server  # noqa: E402  (the tests' small model and its server)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "refdavis-mini3"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED))
    parser.add_argument("--max-calls", type=int, default=4)
    parser.add_argument("--candidates", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "planner_overhead.json"))
    args = parser.parse_args()
    data = Path(args.data)
    expressions = json.loads((data / "meta_expressions.json").read_text())["videos"]
    assistant = Assistant.load("lite")
    rows, calls = [], []
    with tempfile.TemporaryDirectory() as tmp, local_server(Path(tmp) / "server.log") as url:
        config = PlannerConfig(url, ALIAS, max_calls=args.max_calls, candidates=args.candidates, max_tokens=200)
        for video, meta in sorted(expressions.items()):
            text = next(iter(meta["expressions"].values()))["exp"]
            session = assistant.open(data / "JPEGImages" / video, progress=False)
            start = time.perf_counter()
            session.ask(text, mode="direct")
            direct = time.perf_counter() - start
            start = time.perf_counter()
            found = session.find(text, limit=args.candidates)  # what one find with sensible words costs
            find = time.perf_counter() - start
            session.reset()
            session.planner = config
            start = time.perf_counter()
            reply = session.ask(text, mode="planner")
            planned = time.perf_counter() - start
            steps = [s.detail for s in reply.trace if s.kind == "tool"]
            calls += steps
            rows.append({"video": video, "frames": len(session.video), "expression": text, "direct_s": round(direct, 2),
                         "find_s": round(find, 2), "found": len(found.masklets),
                         "planner_s": round(planned, 2), "calls": [f"{s['tool']}({json.dumps(s['arguments'])})" for s in steps],
                         "retries_or_switches": sum(s.kind in ("retry", "switch") for s in reply.trace)})
            print(rows[-1])
    summary = {
        "median_model_s_per_call": round(statistics.median(s["planner_s"] for s in calls), 2),
        "median_find_s": round(statistics.median(r["find_s"] for r in rows), 2),
        "median_direct_s": round(statistics.median(r["direct_s"] for r in rows), 2),
        "median_planner_s": round(statistics.median(r["planner_s"] for r in rows), 2),
    }
    result = {"machine": "2 CPU cores, lite backend, llama.cpp server (Gemma 3 270M Q4_K_M, 2 threads)",
              "max_calls": args.max_calls, "candidates": args.candidates, "summary": summary, "videos": rows}
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
