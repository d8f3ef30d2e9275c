"""sam3_memory: what a SAM 3 video session holds, and the process's peak RSS, at 300, 1,000 and 3,000 frames:
our bounded tracker against transformers' own loop.

The tiny random SAM 3 model of tests/test_sam3.py (its detector proposes an object on most frames, the hotstart
removes it): what grows with length is the session, not the weights. Ours: `Sam3Tracker.propagate` over frames
made on the fly. transformers': the documented loop (`init_video_session(video=frames)`, `add_text_prompt`,
`propagate_in_video_iterator`, `postprocess_outputs`), which pre-loads the video; its session bytes are also given
without the pre-loaded frames. Each run is its own process (peak RSS is per process), one torch thread.
Run: python benchmarks/sam3_memory.py [--frames 300 1000 3000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one_run(kind: str, frames: int) -> dict:
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]
    import torch

    torch.set_num_threads(1)
    from test_sam3 import PHRASE, tiny_model, tiny_processor
    from test_sam3_memory import BouncingSquares

    from agent.backends.sam3.memory import held
    from agent.backends.sam3.tracker import Sam3Tracker
    from agent.video import VideoSource

    model, processor = tiny_model(10.0), tiny_processor()
    video = BouncingSquares(frames)
    start = time.perf_counter()
    if kind == "ours":
        tracker = Sam3Tracker(model, processor)
        session = tracker.session(VideoSource.open(video), [PHRASE])
        for _ in tracker.propagate(session):
            pass
        last = held(session)
        video_bytes = 0
    else:
        session = processor.add_text_prompt(
            processor.init_video_session(video=[video[t] for t in range(frames)], inference_device="cpu"), PHRASE)
        for output in model.propagate_in_video_iterator(session):
            processor.postprocess_outputs(session, output)
        last = held(session)
        video_bytes = sum(f.numel() * f.element_size() for f in session.processed_frames.values())
    seconds = time.perf_counter() - start
    return {"kind": kind, "frames": frames, "seconds": round(seconds, 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "session_mib": round(last.bytes / 2**20, 2), "session_mib_without_video": round((last.bytes - video_bytes) / 2**20, 2),
            "session_items": last.items, "stored_frames_per_object": last.stored_frames}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[300, 1000, 3000])
    parser.add_argument("--one", nargs=2, metavar=("KIND", "FRAMES"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sam3_memory.json")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one[0], int(args.one[1]))))
        return
    runs = []
    for frames in args.frames:
        for kind in ("ours", "transformers"):
            done = subprocess.run([sys.executable, __file__, "--one", kind, str(frames)], capture_output=True, text=True, check=True)
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(runs[-1]), flush=True)
            result = {"benchmark": "sam3_memory", "model": "tests/test_sam3.py tiny random SAM 3 (112 px), 1 phrase",
                      "frame_size": [96, 72], "torch_threads": 1, "runs": runs}
            args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\n{'':13s} {'frames':>6s} {'peak RSS MiB':>12s} {'session MiB':>11s} {'w/o video':>9s} {'items':>7s} {'s':>6s}")
    for r in runs:
        print(f"{r['kind']:13s} {r['frames']:6d} {r['peak_rss_mib']:12.1f} {r['session_mib']:11.2f} "
              f"{r['session_mib_without_video']:9.2f} {r['session_items']:7d} {r['seconds']:6.1f}")


if __name__ == "__main__":
    main()
