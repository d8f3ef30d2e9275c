"""describe_lite: how often lite's description of an object says what the video's expression says (issue 27).

Per video of the shared sets: the object is given by its true first-frame mask (`rvos describe VIDEO --mask
Annotations/VIDEO/FIRST.png` does the same), tracked through the video by lite, then described from its track
(`Pipeline.describe`, no question). The description is compared with the expression, read by lite's own parser:
- class: the description's name is the expression's noun's kind (its COCO class or ImageNet name/group), or the
  detector's class for the object is that COCO class; scored only where the parser maps the noun closely
  (similarity ≥ 0.95: "rhinoceros" is nothing lite knows, so it is not scored);
- colour: one of the expression's colours for the object is among the description's colours (scored where the
  expression gives the object a colour);
- motion: the expression's motion word ("walking", "running", … → moving; "standing" → still) agrees with the
  measured motion ("moving" or "moving in place" count as moving); scored where the parser reads a motion word.

Run: python benchmarks/describe_lite.py [--sets refdavis-mini3 davis16-dev9 davis16-dev21] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from agent.backends import load_backend
from agent.backends.lite.answers import LOOK_ALIKE
from agent.backends.lite.text import parse
from agent.grounder.protocol import ObjectPrompt
from agent.grounder.visual import read_mask_file
from agent.pipeline import Pipeline, Request

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def expected(expression: str, matcher) -> dict:
    query = parse(expression, matcher)
    names = set()
    if query.class_name and query.class_similarity >= LOOK_ALIKE:
        names.add(query.class_name)
    if query.imagenet_name and query.imagenet_similarity >= LOOK_ALIKE:
        names.add(query.imagenet_name)
    return {"names": sorted(names), "colours": ["gray" if c == "grey" else c for c in query.colours], "motion": query.motion}


def judged(record: dict, want: dict) -> dict:
    identity = record["details"]["identity"]
    detector = (identity.get("detector") or {}).get("class")
    out = {}
    if want["names"]:
        out["class"] = record["name"] in want["names"] or detector in want["names"]
    if want["colours"]:
        out["colour"] = bool(set(want["colours"]) & set(record["details"]["colours"]))
    if want["motion"]:
        measured = "still" if record["facts"]["motion"] == "still" else "moving"
        out["motion"] = measured == want["motion"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", default=["refdavis-mini3", "davis16-dev9", "davis16-dev21"])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/describe_lite.json"))
    args = parser.parse_args()
    backend = load_backend("lite")
    rows, started = [], time.time()
    for name in args.sets:
        root = args.data / name
        meta = json.loads((root / "meta_expressions.json").read_text())["videos"]
        for video, entry in sorted(meta.items()):
            expression = next(iter(entry["expressions"].values()))["exp"]
            first = sorted((root / "Annotations" / video).glob("*.png"))[0]
            masks = read_mask_file(first)
            prompt = ObjectPrompt(1, 0, mask=masks[min(masks)], source="person")
            pipeline = Pipeline(backend, root / "JPEGImages" / video, progress=False)
            tracked = pipeline.run(Request(None, (prompt,)))
            reply = pipeline.describe([tracked.masks(t).get(1) for t in range(len(pipeline.video))])
            record = reply.details["description"]
            want = expected(expression, backend.grounder.matcher)
            row = {"set": name, "video": video, "expression": expression, "expected": want, "description": record["answer"],
                   "name": record["name"], "colours": record["details"]["colours"], "motion": record["facts"]["motion"],
                   "direction": record["facts"]["direction"], "right": judged(record, want)}
            rows.append(row)
            print(f"{video:18s} {row['right']}  {record['answer']}", flush=True)
    summary = {}
    for attribute in ("class", "colour", "motion"):
        scored = [r["right"][attribute] for r in rows if attribute in r["right"]]
        summary[attribute] = {"right": sum(scored), "scored": len(scored), "rate": round(sum(scored) / max(len(scored), 1), 3)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "videos": rows, "seconds": round(time.time() - started)}, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
