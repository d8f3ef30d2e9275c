"""gpu_check: what a lent GPU machine checks, in one command, every result in one folder.

1. Each Sa2VA fixture (a tiny random checkpoint in the official layout, with the official
   implementation's float32 masks) through `rvos segment` on the GPU: float32, bfloat16 (the GPU
   default), bfloat16 with `--quantize 4bit` / `8bit`, and with `--motion-aware`. For each run: the worst frame's pixel
   agreement with the official masks, the mean IoU per object, seconds and peak GPU memory.
2. SAM 2 Hiera-L (random weights, 854×480) on the GPU: sam2_vs_stock.py, sa2va_3obj.py, sa2vai_3obj.py.
3. `rvos train` on the GPU under bfloat16 mixed precision: a tiny random Sa2VA from scratch and LoRA on
   the Qwen2.5-VL fixture, each then run by `rvos segment --device cuda`; first and last losses.
4. sam3: the fixture's check.sh (../shared/fixtures/sam3-video-tiny: `rvos segment --backend sam3` against
   transformers' stored masks) on the CPU and on the device in float32; then SAM 3 at its real size
   (`Sam3VideoConfig()` defaults, random weights, bfloat16 on CUDA, 854×480 frames): seconds per frame for 1 and 5
   objects, our bounded tracker against transformers' own loop, with peak GPU memory. `--sam3-size tiny` runs
   the same code on test_sam3's tiny model (a CPU dry run); without CUDA the device parts are skipped.

A failing step is recorded with its traceback and the rest still runs (a lent machine's time is short).
Run: python benchmarks/gpu_check.py --out DIR [--fixtures ../shared/fixtures] [--data ../shared/data/refdavis-mini3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]
from test_sa2va_fixture import FIXTURES, expected, fixture_checkpoint  # noqa: E402
from timing import REFDAVIS  # noqa: E402

VARIANTS = {"float32": ["--dtype", "float32"], "bfloat16": ["--dtype", "bfloat16"],
            "bfloat16+4bit": ["--dtype", "bfloat16", "--quantize", "4bit"],
            "bfloat16+8bit": ["--dtype", "bfloat16", "--quantize", "8bit"],
            "bfloat16+motion-aware": ["--dtype", "bfloat16", "--motion-aware"]}  # runs; not the official masks by design
PARTS = ["fixtures", "training", "benchmarks", "sam3"]
RESULTS = {"sam2_vs_stock": "sam2_speedup_vs_stock", "sa2va_3obj": "sa2va_3obj_speedup_vs_reference",  # their result files
           "sa2vai_3obj": "sa2vai_3obj_speedup_vs_reference"}


def versions() -> dict:
    found = {}
    for name in ("torch", "transformers", "bitsandbytes", "sam2"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    found["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return found


def agreement(folder: Path, out: Path) -> dict:
    from agent.writers import decode_rle

    frames = json.loads((out / "result.json").read_text())["frames"]
    want = expected(folder, "two_objects", "masks")  # [objects, frames, h, w]
    got = np.stack([np.stack([decode_rle(f["objects"][str(i + 1)]["rle"]) for f in frames]) for i in range(len(want))])
    union = (got | want).reshape(*want.shape[:2], -1).sum(-1)
    iou = np.where(union > 0, (got & want).reshape(*want.shape[:2], -1).sum(-1) / np.maximum(union, 1), 1.0)
    return {"min_pixel_agreement": round(float((got == want).reshape(*want.shape[:2], -1).mean(-1).min()), 5),
            "mean_iou_per_object": [round(float(v), 4) for v in iou.mean(1)]}


def segment_fixture(folder: Path, variant: list[str], device: str, work: Path) -> dict:
    run = json.loads((folder / "expected" / "two_objects" / "run.json").read_text())
    model = work / "checkpoint"
    if not model.exists():
        fixture_checkpoint(folder, model)
    strategy = [] if "keyframe_indices" in run else ["--keyframe-strategy", "first"]  # Sa2VA-i: its own default
    out = work / "out"
    args = ["segment", str(folder / "inputs"), run["instruction"].replace("<image>", ""), "--out", str(out), "--overwrite",
            "--backend", "sa2va", "--model", str(model), "--keyframes", "5", *strategy, "--answer", run["forced_answer"],
            "--no-overlay", "--device", device, *variant]
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    code, error = cli(args)
    seconds = time.perf_counter() - start
    if code != 0:
        return {"exit": code, "error": error}
    row = {"exit": 0, "seconds": round(seconds, 2), **agreement(folder, out)}
    if device.startswith("cuda"):
        row["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return row


def fixture_checks(fixtures: Path, device: str, variants: list[str]) -> dict:
    results = {}
    for folder in sorted(p.resolve() for p in fixtures.iterdir() if (p / "checkpoint").is_dir()):
        with tempfile.TemporaryDirectory() as tmp:
            for variant in variants:
                try:
                    row = segment_fixture(folder, VARIANTS[variant], device, Path(tmp))
                except Exception:  # one broken step must not cost the others
                    row = {"exit": None, "error": traceback.format_exc()[-3000:]}
                results[f"{folder.name} {variant}"] = row
                print(folder.name, variant, json.dumps(row), flush=True)
    return results


def benchmark_runs(device: str, data: Path, out: Path, frames: int, limit_s: int) -> dict:
    commands = {
        "sam2_vs_stock": ["sam2_vs_stock.py", "--frames", str(frames), "--config", "configs/sam2/sam2_hiera_l.yaml"],
        "sa2va_3obj": ["sa2va_3obj.py", "--frames", str(frames)],
        "sa2vai_3obj": ["sa2vai_3obj.py", "--frames", str(frames), "--keyframes", "5"],
    }
    results = {}
    for name, command in commands.items():
        argv = [sys.executable, str(ROOT / "benchmarks" / command[0]), *command[1:], "--device", device,
                "--data", str(data), "--results", str(out)]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=limit_s)
            results[name] = {"exit": done.returncode, "command": " ".join(["python", f"benchmarks/{command[0]}", *command[1:],
                                                                          "--device", device])}
            if done.returncode != 0:
                results[name]["error"] = done.stderr[-3000:]
        except subprocess.TimeoutExpired:
            results[name] = {"exit": None, "error": f"over {limit_s} s"}
        print(name, json.dumps(results[name]), flush=True)
    return results


def cli(args: list[str]) -> tuple[int, str]:
    """`rvos ARGS` in this process, with tracebacks: (exit code, the end of stderr)."""
    from agent.cli import main

    stderr = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
        code = main([*args, "--debug"])
    return code, stderr.getvalue()[-3000:]


def train_and_segment(name: str, model: str, device: str, work: Path, steps: int) -> dict:
    from agent.training.synthetic import generate

    config = work / f"{name}.yaml"
    config.write_text(json.dumps({  # JSON is YAML
        "model": model, "out": str(work / name), "steps": steps, "save_every": steps, "log_every": 1, "frames": 2,
        "keyframes": 2, "lr": 1e-3, "device": device, "mixed_precision": "bf16",
        "data": [{"format": "synthetic", "videos": 8, "seed": 5}], "trainable": {"lora_rank": 4}}))
    start = time.perf_counter()
    code, error = cli(["train", str(config)])
    if code != 0:
        return {"exit": code, "error": error}
    row = {"exit": 0, "train_seconds": round(time.perf_counter() - start, 2)}
    losses = [json.loads(line)["loss"] for line in (work / name / "log.jsonl").read_text().splitlines()]
    row["loss_first_last"] = [round(losses[0], 4), round(losses[-1], 4)]
    frames = next((generate(work / "video", 1, seed=9) / "JPEGImages").iterdir())
    code, error = cli(["segment", str(frames), "the red circle", "--out", str(work / f"{name}-out"), "--overwrite",
                       "--backend", "sa2va", "--model", str(work / name / "checkpoint"), "--answer", "Sure, [SEG].",
                       "--no-overlay", "--device", device])
    row["segment_exit"] = code
    if code != 0:
        row["error"] = error
    return row


def training_checks(fixtures: Path, device: str) -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fixture = fixture_checkpoint((fixtures / "sa2va-qwen2_5-vl-tiny").resolve(), work / "fixture")
        for name, model, steps in (("tiny", "tiny", 40), ("lora-qwen2_5-vl-fixture", str(fixture), 10)):
            try:
                results[name] = train_and_segment(name, model, device, work, steps)
            except Exception:  # one broken step must not cost the others
                results[name] = {"exit": None, "error": traceback.format_exc()[-3000:]}
            print("train", name, json.dumps(results[name]), flush=True)
    return results


def sam3_fixture_check(fixtures: Path, device: str) -> dict:
    folder = fixtures / "sam3-video-tiny"
    if not (folder / "check.sh").is_file():
        return {"skipped": f"no {folder / 'check.sh'}"}
    results = {}
    runs = {"cpu": ""}
    if device != "cpu":
        runs[device] = f"--device {device} --dtype float32"
        if device.startswith("cuda") and not torch.cuda.is_available():
            del runs[device]
            results[device] = {"skipped": "no CUDA here"}
    for name, extra in runs.items():
        env = {**os.environ, "RVOS_EXTRA_ARGS": extra}
        done = subprocess.run(["bash", str(folder / "check.sh"), str(ROOT)], capture_output=True, text=True, env=env, timeout=600)
        results[name] = {"exit": done.returncode, "passes": done.stdout.count("-> PASS"),
                         "worst": [line for line in done.stdout.splitlines() if "worst per-frame" in line]}
        if done.returncode != 0:
            results[name]["error"] = (done.stdout + done.stderr)[-2000:]
        print("sam3 fixture", name, json.dumps(results[name]), flush=True)
    return results


def sam3_model(size: str, objects: int, device: str, dtype: torch.dtype):
    """Random SAM 3 that makes `objects` objects on the first frame: every detection counts (thresholds 0) and
    `max_num_objects` keeps the best ones. "full": the real architecture (Sam3VideoConfig() defaults)."""
    from test_sam3 import tiny_config, tiny_processor
    from transformers import CLIPTokenizer, Sam2VideoVideoProcessor, Sam3ImageProcessor, Sam3VideoConfig, Sam3VideoModel

    config = tiny_config() if size == "tiny" else Sam3VideoConfig()
    config.score_threshold_detection, config.new_det_thresh, config.max_num_objects = 0.0, 0.0, objects
    config.det_nms_thresh, config.fill_hole_area = 0.0, 0  # NMS and hole filling need the `kernels` hub kernel
    torch.manual_seed(0)
    model = Sam3VideoModel(config).eval()
    with torch.no_grad():
        model.detector_model.detr_decoder.presence_head.layer3.bias.fill_(10.0)
        model.tracker_model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(3.0)
    model = model.to(device, dtype)
    processor = tiny_processor()
    if size != "tiny":  # the same byte-level tokenizer, the processors at the real input size
        side = config.image_size
        tokenizer: CLIPTokenizer = processor.tokenizer
        processor = type(processor)(image_processor=Sam3ImageProcessor(size={"height": side, "width": side}),
                                    video_processor=Sam2VideoVideoProcessor(size={"height": side, "width": side}),
                                    tokenizer=tokenizer, target_size=side)
    return model, processor


def sam3_speed(size: str, device: str, frames: int) -> dict:
    """Seconds per frame, ours (bounded, frames made on demand) against transformers' loop (pre-loaded video)."""
    from synthetic import MovingSquares

    from agent.backends.sam3.tracker import Sam3Tracker
    from agent.video import VideoSource

    if device.startswith("cuda") and not torch.cuda.is_available():
        return {"skipped": "no CUDA here"}
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    frame_size = (854, 480) if size == "full" else (96, 72)
    video = MovingSquares(frames, frame_size)
    results = {}
    for objects in (1, 5):
        model, processor = sam3_model(size, objects, device, dtype)
        row = {}
        for kind in ("transformers", "ours"):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            start, counts = time.perf_counter(), []
            if kind == "ours":
                tracker = Sam3Tracker(model, processor, device, dtype)
                session = tracker.session(VideoSource.open(video), ["a red square"])
                outputs = (post for _, _, post in tracker.propagate(session))
            else:
                session = processor.init_video_session(video=[video[t] for t in range(frames)], inference_device=device, dtype=dtype)
                session = processor.add_text_prompt(session, "a red square")
                outputs = (processor.postprocess_outputs(session, out) for out in model.propagate_in_video_iterator(session))
            for post in outputs:
                counts.append(len(post["object_ids"]))
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            row[kind] = {"s_per_frame": round((time.perf_counter() - start) / frames, 4), "objects_shown": max(counts, default=0)}
            if device.startswith("cuda"):
                row[kind]["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        row["speedup"] = round(row["transformers"]["s_per_frame"] / row["ours"]["s_per_frame"], 3)
        results[f"{objects} objects"] = row
        print("sam3 speed", size, objects, json.dumps(row), flush=True)
        del model
    return results


def sam3_checks(fixtures: Path, device: str, size: str, frames: int) -> dict:
    results = {}
    for name, check in (("fixture", lambda: sam3_fixture_check(fixtures, device)),
                        ("speed", lambda: sam3_speed(size, device, frames))):
        try:
            results[name] = check()
        except Exception:  # one broken step must not cost the others
            results[name] = {"exit": None, "error": traceback.format_exc()[-3000:]}
            print("sam3", name, "FAILED", results[name]["error"][-500:], flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fixtures", type=Path, default=FIXTURES)
    parser.add_argument("--data", type=Path, default=REFDAVIS)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--frames", type=int, default=40, help="frames in the SAM 2 benchmarks")
    parser.add_argument("--benchmark-limit", type=int, default=240, help="seconds each SAM 2 benchmark may take")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=PARTS)
    parser.add_argument("--sam3-size", choices=["full", "tiny"], default="full", help="tiny: a CPU dry run of the sam3 speed part")
    parser.add_argument("--sam3-frames", type=int, default=20, help="frames in the sam3 speed runs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"versions": versions(), "fixtures": {}, "training": {}, "benchmarks": {}, "sam3": {}}
    print(json.dumps(report["versions"]), flush=True)
    checks = {"fixtures": lambda: fixture_checks(args.fixtures, args.device, args.variants),
              "training": lambda: training_checks(args.fixtures, args.device),
              "benchmarks": lambda: benchmark_runs(args.device, args.data, args.out, args.frames, args.benchmark_limit),
              "sam3": lambda: sam3_checks(args.fixtures, args.device, args.sam3_size, args.sam3_frames)}
    for part in args.parts:
        report[part] = checks[part]()
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    print("\nfixture, variant: worst-frame pixel agreement with the official masks | mean IoU per object | s | peak MiB")
    for name, row in report["fixtures"].items():
        if row.get("exit") == 0:
            print(f"{name:42s} {row['min_pixel_agreement']:.4f} {row['mean_iou_per_object']} {row['seconds']:6.2f} {row.get('peak_gpu_mib')}")
        else:
            print(f"{name:42s} FAILED: {row['error'].strip().splitlines()[-1]}")
    for name, row in report["training"].items():
        print("train", name, json.dumps({k: v for k, v in row.items() if k != "error"}), row.get("error", "").strip()[-300:])
    for name, row in report["benchmarks"].items():
        suffix = "" if args.device == "cpu" else "_" + torch.device(args.device).type  # as timing.result_path names it
        result = args.out / f"{RESULTS[name]}{suffix}.json"
        if row["exit"] != 0 or not result.is_file():
            print(name, "FAILED:", row.get("error", "no result").strip().splitlines()[-1])
            continue
        summary = json.loads(result.read_text())
        for precision in ("float32", "bfloat16"):  # sam2_vs_stock's two runs
            summary.update({f"{precision} {k}": v for k, v in summary.pop(precision, {}).items() if "s_per_frame" in k})
        print(name, json.dumps({k: v for k, v in summary.items() if "s_per_frame" in k or "speedup" in k or k in ("masks_equal", "min_pixel_agreement")}))

    for name, row in report["sam3"].items():
        print("sam3", name, json.dumps(row)[:600])


if __name__ == "__main__":
    main()
