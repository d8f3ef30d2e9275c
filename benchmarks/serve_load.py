"""serve_load: N clients at once on `rvos serve` (lite backend), each through gradio's own Python client:
upload a shared video (encoded as an H.264 mp4, as a person's upload would be), ask for the object
(mode direct), download the zip. Records completed / failed, seconds from upload to answer (p50, p95)
and frames per second over all clients, for each N; and checks every client's masks and RLE against
what `rvos segment` writes for the same video and instruction.
Run: python benchmarks/serve_load.py [--clients 1 2 4]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import encode_video  # noqa: E402  (the tests' encoder: a person's upload, as H.264)
SHARED = ROOT.parent / "shared" / "data" / "refdavis-mini3"
RESULTS = ROOT / "benchmarks" / "results" / "serve_load.json"


def read_results(folder: Path) -> tuple[list[np.ndarray], list[dict]]:
    from agent.writers import read_palette_png

    masks = [read_palette_png(p) for p in sorted((folder / "masks").glob("*.png"))]
    return masks, [f["objects"] for f in json.loads((folder / "result.json").read_text())["frames"]]


def start_server(port: int, concurrency: int, log: Path, sessions: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "agent", "serve", "--backend", "lite", "--port", str(port), "--concurrency", str(concurrency),
               "--max-sessions", str(sessions)]  # every client of every round stays a session (a script never closes a tab)
    process = subprocess.Popen(command, stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 300
    while "Running on" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the server did not start:\n{log.read_text()}")
        time.sleep(0.5)
    return process


def _file_path(output) -> str | None:
    """A file output as the client gives it: a path, or a component update holding one."""
    if isinstance(output, dict):
        output = output.get("value", output.get("path"))
    return output if isinstance(output, str) else None


def one_client(url: str, video: Path, question: str, reference, outcome: dict) -> None:
    from gradio_client import Client, handle_file

    start = time.perf_counter()
    try:
        client = Client(url, verbose=False)
        client.predict(handle_file(str(video)), api_name="/open_video")
        answer = client.predict(question, "direct", 0, api_name="/ask")
        outcome["seconds"] = time.perf_counter() - start
        if "object(s) found" not in str(answer[0]):
            raise RuntimeError(f"no answer: {answer[0]}")
        archive = next(Path(v) for v in map(_file_path, client.predict(api_name="/download")) if v and v.endswith(".zip"))  # built when asked
        with tempfile.TemporaryDirectory() as folder, zipfile.ZipFile(archive) as zipped:
            zipped.extractall(folder)
            masks, objects = read_results(Path(folder))
        outcome["equal"] = len(masks) == len(reference[0]) and all(np.array_equal(a, b) for a, b in zip(masks, reference[0])) \
            and objects == reference[1]
    except Exception as exc:  # a failure is a result here, counted and reported
        outcome["error"] = f"{type(exc).__name__}: {exc}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--video", default="blackswan", help="a refdavis-mini3 video")
    parser.add_argument("--question", default="a black swan")
    parser.add_argument("--concurrency", type=int, default=2, help="the server's --concurrency")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="serve-load-"))
    video = work / f"{args.video}.mp4"
    frames = encode_video(SHARED / "JPEGImages" / args.video, video, "libx264")
    subprocess.run([sys.executable, "-m", "agent", "segment", str(video), args.question, "--out", str(work / "reference")], check=True,
                   cwd=ROOT, capture_output=True)
    reference = read_results(work / "reference")

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = start_server(port, args.concurrency, work / "serve.log", sum(args.clients))
    url = f"http://127.0.0.1:{port}/"
    runs = []
    try:
        for clients in args.clients:
            outcomes = [{} for _ in range(clients)]
            threads = [threading.Thread(target=one_client, args=(url, video, args.question, reference, o)) for o in outcomes]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=900)
            wall = time.perf_counter() - start
            seconds = [o["seconds"] for o in outcomes if "error" not in o and "seconds" in o]
            run = {
                "clients": clients, "completed": len(seconds), "failed": clients - len(seconds),
                "equal_to_rvos_segment": sum(bool(o.get("equal")) for o in outcomes),
                "answer_s_p50": round(float(np.percentile(seconds, 50)), 2) if seconds else None,
                "answer_s_p95": round(float(np.percentile(seconds, 95)), 2) if seconds else None,
                "wall_s": round(wall, 2), "frames_per_s_overall": round(clients * frames / wall, 2),
                "errors": [o["error"] for o in outcomes if "error" in o],
            }
            runs.append(run)
            print(json.dumps(run))
    finally:
        server.terminate()
        server.wait(timeout=30)

    result = {"benchmark": "serve_load", "backend": "lite", "video": f"refdavis-mini3/{args.video} as H.264 mp4", "frames": frames,
              "question": args.question, "mode": "direct", "server_concurrency": args.concurrency, "runs": runs,
              "command": "python benchmarks/serve_load.py --clients " + " ".join(map(str, args.clients))}
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(f"→ {RESULTS}")
    if any(r["failed"] or r["equal_to_rvos_segment"] != r["clients"] for r in runs):
        raise SystemExit("some clients failed or got other masks than rvos segment")


if __name__ == "__main__":
    main()
