"""`rvos eval --protocol semi`: the DAVIS semi-supervised protocol. Each video's first annotated frame
(every object id in it) is the prompt; the tracker carries it through the video; J and F are scored
per object without the first and last frame, as the DAVIS toolkit does.

Output folder: `predictions/<video>/<frame>.png` (palette PNGs, the DAVIS submission layout; a
finished video's folder is the resume marker), `report.json`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from agent.errors import UserError
from agent.evaluation.report import provenance, record_provenance
from agent.evaluation.scoring import score_folders
from agent.grounder.protocol import ObjectPrompt
from agent.pipeline import Pipeline, Request
from agent.video.source import VideoSource
from agent.writers.masks import save_frame_masks
from agent.writers.palette import read_palette_png


# what the protocol has no use for, and why: it reads the DAVIS folders itself, runs on this machine, and
# prompts the tracker with the first annotated frame's masks (no grounder, no keyframes, no answer)
UNUSED_OPTIONS = {
    "planner": "the planner grounds language, and the masks are the prompt here",
    "mode": "no words are grounded (the first annotated frame's masks are the prompt)",
    "dataset": "it reads JPEGImages/ and Annotations/ of ROOT itself (the generic layout or DAVIS 2017)",
    "split": "it reads JPEGImages/ and Annotations/ of ROOT itself (give the split's folder as ROOT)",
    "ray": "it runs on this machine",
    "workers": "it runs on this machine",
    "answer": "no grounder runs (the first annotated frame's masks are the prompt)",
    "keyframes": "no grounder runs (the first annotated frame's masks are the prompt)",
    "keyframe_strategy": "no grounder runs (the first annotated frame's masks are the prompt)",
}


def check_semi_options(**given) -> None:
    """Refuse an option the protocol would ignore (one given is not None), before anything loads."""
    for name, value in given.items():
        if value is not None and name in UNUSED_OPTIONS:
            raise UserError(f"--protocol semi takes no --{name.replace('_', '-')}: {UNUSED_OPTIONS[name]}; drop it")


def davis_folders(root: Path) -> tuple[Path, Path]:
    """(JPEGImages, Annotations) of the generic layout or of DAVIS (its `480p` resolution)."""
    for images, annotations in ((root / "JPEGImages", root / "Annotations"), (root / "JPEGImages" / "480p", root / "Annotations" / "480p")):
        if images.is_dir() and annotations.is_dir() and any(p.is_dir() for p in annotations.iterdir()):
            return images, annotations
    raise UserError(f"{root} has no JPEGImages/<video>/ and Annotations/<video>/ folders; the semi-supervised protocol needs "
                    "a DAVIS-style dataset (the generic layout or DAVIS 2017)")


def first_annotation(video: VideoSource, annotations: Path) -> list[ObjectPrompt]:
    """Every object of the video's first annotated frame, as mask prompts."""
    for index, name in enumerate(video.frame_names):
        path = annotations / f"{name}.png"
        if path.is_file():
            ids = read_palette_png(path)
            prompts = [ObjectPrompt(int(i), index, mask=ids == i, source="person") for i in np.unique(ids) if i not in (0, 255)]
            if prompts:
                return prompts
    raise UserError(f"{annotations} has no annotated frame with an object; the semi-supervised protocol needs one")


def track_video(backend, frames: list[Path], annotations: Path, out: Path) -> int:
    """Track one video from its first annotation; writes the palette PNGs (all at once, by rename)."""
    video = VideoSource.from_frame_files(frames)
    prompts = first_annotation(video, annotations)
    # the one path with the masks as a person's prompts: what `rvos segment VIDEO --mask FIRST.png` does
    reply = Pipeline(backend, video, progress=False).run(Request(prompts=tuple(prompts)))
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    width, height = video.size
    for index, name in enumerate(video.frame_names):
        save_frame_masks(tmp / f"{name}.png", reply.masks(index), (height, width), "palette")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return len(video)


def run_semi_supervised(job, progress: bool = True, backend=None) -> dict:
    root, out = Path(job.root).expanduser(), Path(job.out)
    images, annotations = davis_folders(root)
    videos = sorted(p.name for p in annotations.iterdir() if p.is_dir())
    predictions = out / "predictions"
    predictions.mkdir(parents=True, exist_ok=True)
    todo = [v for v in videos if not (predictions / v).is_dir()]
    timing_path = out / "timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {}
    if todo:
        if backend is None:
            backend = job.load_backend()  # records its provenance in `out`
        else:
            record_provenance(out, backend)
    for name in tqdm(todo, unit="video", desc="eval (semi)", disable=not progress):
        frames = sorted((images / name).glob("*.jpg"))
        start = time.perf_counter()
        count = track_video(backend, frames, annotations / name, predictions / name)
        timing[name] = [time.perf_counter() - start, count]
        timing_path.write_text(json.dumps(timing))
    report = score_folders(_ground_truth_root(annotations, out), predictions, skip_first_last=True)
    seconds, frames = (sum(v[i] for v in timing.values()) for i in (0, 1))
    report |= {"protocol": "DAVIS semi-supervised (first annotated frame as prompt; first and last frame not scored)",
               **provenance(out, job), "mode": None, "seconds_per_frame": round(seconds / max(frames, 1), 3)}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report


def _ground_truth_root(annotations: Path, out: Path) -> Path:
    """A folder whose `Annotations/` is `annotations` (DAVIS 2017's `Annotations/480p` through a link)."""
    if annotations.name == "Annotations":
        return annotations.parent
    view = out / "ground_truth"
    view.mkdir(exist_ok=True)
    if not (view / "Annotations").exists():
        (view / "Annotations").symlink_to(annotations.resolve(), target_is_directory=True)
    return view
