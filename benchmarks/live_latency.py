"""live_latency: latency and drop rate of `rvos segment --live` (lite or the sa2va fixture, this machine) at 10 and 25
frames/s input (#28).

A real shared video (blackswan, 50 frames, 854×480) is encoded once as H.264 MPEG-TS (zerolatency, as a live
encoder sends it); a thread writes its packets into a named pipe at the input rate, and `agent.live.run_live`
reads the pipe with the default queue (2 frames, newest kept). Per rate: latency p50/p95 (a frame decoded → its
line in frames.jsonl, every handled frame, the first — which waits for the grounding — included; and after the
first, the steady state), the frames dropped / received, and the frames handled per second of stream.

Run: python benchmarks/live_latency.py [--backend lite|sa2va-fixture] [--rates 10 25] [--frames 50] [--loops 1] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from agent.backends import load_backend
from agent.live import run_live
from agent.pipeline import Request
from agent.video.live import LiveSource

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.live_stream import encode_ts  # noqa: E402  (the tests' stream writer)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "refdavis-mini3" / "JPEGImages" / "blackswan"


def feed(ts: Path, fifo: Path, fps: float) -> None:
    """The file's packets into the pipe, `fps` a second (remuxed, not re-encoded)."""
    import av

    # Python opens the pipe (letting go of the GIL while open() waits for the reader, a thread of this process)
    with av.open(str(ts)) as source, open(fifo, "wb", buffering=0) as pipe, \
            av.open(pipe, "w", format="mpegts", container_options={"flush_packets": "1"}) as sink:
        into = sink.add_stream_from_template(source.streams.video[0])
        start, sent = time.monotonic(), 0
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is None:
                continue
            time.sleep(max(0.0, start + sent / fps - time.monotonic()))
            packet.stream = into
            sink.mux(packet)
            sent += 1


def rss_mb() -> float:
    """This process's resident memory now (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def one_rate(backend, ts: Path, fps: float, folder: Path) -> dict:
    fifo = folder / f"stream-{fps:g}"
    os.mkfifo(fifo)
    feeder = threading.Thread(target=feed, args=(ts, fifo, fps), daemon=True)
    feeder.start()
    samples: list[float] = []  # resident memory twice a second while the stream runs: flat, or growing with it
    sampling = threading.Event()
    sampler = threading.Thread(target=lambda: [samples.append(rss_mb()) for _ in iter(lambda: sampling.wait(0.5), True)],
                               daemon=True)
    sampler.start()
    started = time.monotonic()
    run = run_live(LiveSource.open(str(fifo)), backend, request(backend), folder / f"out-{fps:g}")
    wall = time.monotonic() - started
    sampling.set()
    feeder.join()
    half = len(samples) // 2
    records = [json.loads(line) for line in (run.out / "frames.jsonl").read_text().splitlines()]
    steady = [r["latency_ms"] for r in records[1:]]
    return {"input_fps": fps, "frames_received": run.received, "frames_handled": run.handled, "dropped_frames": run.dropped,
            "drop_rate": round(run.dropped / run.received, 4),
            "latency_ms": {"p50": run.latency_p50_ms, "p95": run.latency_p95_ms},
            "first_frame_latency_ms": records[0]["latency_ms"],
            "steady_latency_ms": {"p50": round(float(np.percentile(steady, 50)), 1), "p95": round(float(np.percentile(steady, 95)), 1)}
            if steady else None,
            "handled_per_stream_second": round(run.handled / (run.received / fps), 2), "wall_s": round(wall, 2),
            "objects_on_last_frame": sum(1 for o in records[-1]["objects"].values() if o["bbox"]),
            "rss_mb": {"first_half_max": round(max(samples[:half]), 1), "second_half_max": round(max(samples[half:]), 1)}
            if half else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", nargs="+", type=float, default=[10, 25])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--loops", type=int, default=1, help="the clip this many times over: a longer stream (memory, steady state)")
    parser.add_argument("--backend", choices=["lite", "sa2va-fixture"], default="lite",
                        help="sa2va-fixture: the tiny random Qwen2.5-VL Sa2VA checkpoint of ../shared/fixtures (its answer "
                             "forced to one [SEG]): the pipeline's and tracker's own cost, not a real model's speed")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/live_latency[-sa2va-fixture].json")
    args = parser.parse_args()
    suffix = "" if args.backend == "lite" else f"-{args.backend}"
    args.out = args.out or str(Path(__file__).parent / "results" / f"live_latency{suffix}.json")
    backend = load_backend("lite", device="cpu") if args.backend == "lite" else sa2va_fixture()
    files = sorted(DATA.glob("*.jpg"))[: args.frames] * args.loops
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # warm the models once (their first call sets up), so each rate measures the steady run
        run_live(LiveSource.open(str(_first_clip(files, folder))), backend, request(backend), folder / "warm")
        results = []
        for fps in args.rates:
            ts = folder / f"swan-{fps:g}.ts"
            encode_ts(files, ts, int(fps))
            results.append(one_rate(backend, ts, fps, folder))
            print(json.dumps(results[-1]))
    report = {"benchmark": "live_latency", "video": "refdavis-mini3/blackswan", "frames": len(files), "frame_size": [854, 480],
              "backend": args.backend, "queue": 2, "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "results": results}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"→ {args.out}")


def request(backend) -> Request:
    """The benchmark's question; the fixture's in the direct mode (its random weights cannot reason)."""
    return Request("a black swan", mode="direct" if backend.name == "sa2va" else "auto")


def sa2va_fixture():
    """The Qwen2.5-VL Sa2VA fixture as the tests load it, answering every request with one [SEG]."""
    from test_sa2va_fixture import load_fixture  # the tests' loader (their pixel limits, SAM 2 config)

    backend = load_fixture(DATA.parents[3] / "fixtures" / "sa2va-qwen2_5-vl-tiny")
    backend.grounder.teacher = {"segment": "Sure, [SEG]."}  # random weights: the answer is forced, the masks are computed
    return backend


def _first_clip(files: list[Path], folder: Path) -> Path:
    ts = folder / "warm.ts"
    encode_ts(files[:3], ts, 10)
    return ts


if __name__ == "__main__":
    main()
