"""`rvos eval`: run a backend on every expression of a benchmark, resumably, locally or on Ray.

Output folder:
- `predictions/<video>/<exp_id>/<frame>.png`: the submission layout (8-bit, 0 / 255);
- `scores/<video>/<exp_id>.json`: one finished expression (its presence is the resume marker);
- `failures/<video>/<exp_id>.json`: an expression that failed (retried on the next run);
- `report.json`, `submission.zip`, `plots/*.png` once every expression has run.
Each expression's files are written under a temporary name and renamed, so a killed run
loses at most the expression in flight.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from agent.errors import UserError
from agent.evaluation.datasets import Dataset, Expression, read_dataset
from agent.distributed import run_on_ray
from agent.evaluation.scoring import FrameScorer
from agent.pipeline import DEFAULT_MODE, Pipeline, Request
from agent.video.source import VideoSource
from agent.writers.masks import save_frame_masks


@dataclass
class EvalJob:
    root: str
    dataset: str
    split: str | None
    backend: str
    out: str
    model: str | None = None
    device: str = "auto"
    backend_options: dict[str, Any] = field(default_factory=dict)
    planner: Any = None  # an agent.planner.PlannerConfig: in mode auto (or planner), each expression is asked through it
    mode: str = DEFAULT_MODE  # as every door: see agent.pipeline

    def read(self) -> Dataset:
        return read_dataset(self.root, self.dataset, self.split)

    def load_backend(self):
        from agent.backends import load_backend
        from agent.evaluation.report import record_provenance

        backend = load_backend(self.backend, self.model, self.device, **self.backend_options)
        record_provenance(Path(self.out), backend)  # report.json says what the predictions were made with
        return backend


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def score_path(out: Path, expression: Expression) -> Path:
    return out / "scores" / expression.video / f"{expression.exp_id}.json"


def failure_path(out: Path, expression: Expression) -> Path:
    return out / "failures" / expression.video / f"{expression.exp_id}.json"


def is_done(out: Path, expression: Expression) -> bool:
    return score_path(out, expression).is_file()


def evaluate_expression(backend, expression: Expression, out: Path, planner=None, mode: str = DEFAULT_MODE) -> dict:
    """Segment one expression through the one path (as `rvos segment` would), write its prediction PNGs and its score record."""
    start = time.perf_counter()
    video = VideoSource.from_frame_files(expression.frame_paths())
    pipeline = Pipeline(backend, video, progress=False, planner=planner)
    reply = pipeline.run(Request(expression.text, mode=mode))
    indices, answer, objects = pipeline.keyframe_indices, reply.answer, len(reply.objects)
    final = out / "predictions" / expression.video / expression.exp_id
    tmp = final.with_name(f".{expression.exp_id}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    scorer = FrameScorer()
    width, height = video.size
    answered_empty = True  # no mask on any frame (MeViS v2's N-acc / T-acc)
    for index in range(len(video)):
        # the benchmark's submission layout: the union of the reply's objects, 0 / 255 (the writer `rvos segment` uses)
        pred = save_frame_masks(tmp / f"{expression.frame_names[index]}.png", reply.masks(index), (height, width), "binary")
        answered_empty = answered_empty and not pred.any()
        gt = expression.gt(index) if expression.gt else None
        if gt is None and expression.gt is not None and expression.missing_gt_is_empty:
            gt = np.zeros_like(pred)
        if gt is not None:
            foreground = expression.foreground(index) if expression.foreground else None
            if expression.foreground is not None and foreground is None:
                foreground = np.zeros_like(pred)
            scorer.add(index, pred, gt, foreground)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    record = {
        "video": expression.video, "exp_id": expression.exp_id, "expression": expression.text,
        "category": expression.category, "answer": answer, "objects": objects, "mode": reply.mode,
        "keyframes": indices, "seconds": round(time.perf_counter() - start, 3), "frames": len(video),
        "answered_empty": answered_empty,
    }
    if expression.has_target is not None:
        record["has_target"] = expression.has_target
    if scorer.j:
        record["scores"] = scorer.result()
        record["per_frame_J"] = scorer.per_frame_j()
    _write_json(score_path(out, expression), record)
    failure_path(out, expression).unlink(missing_ok=True)
    return record


def evaluate_video(backend, expressions: list[Expression], out: Path, planner=None, mode: str = DEFAULT_MODE) -> list[str]:
    """Every pending expression of one video; a failure is recorded and the others go on."""
    failed = []
    for expression in expressions:
        if is_done(out, expression):
            continue
        try:
            evaluate_expression(backend, expression, out, planner, mode)
        except Exception as exc:  # recorded, retried on the next run
            if planner is not None and isinstance(exc, UserError):
                raise  # a planner that is down or refuses fails every expression alike: one message
            _write_json(failure_path(out, expression), {
                "video": expression.video, "exp_id": expression.exp_id,
                "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
            })
            failed.append(expression.key)
    return failed


def pending_videos(dataset: Dataset, out: Path) -> dict[str, list[Expression]]:
    by_video: dict[str, list[Expression]] = {}
    for expression in dataset.expressions:
        by_video.setdefault(expression.video, []).append(expression)
    return {v: exps for v, exps in by_video.items() if not all(is_done(out, e) for e in exps)}


class EvalWorker:
    """One Ray worker: one model, the videos it is handed.

    Workers write into the same output folder with the same per-expression markers, so a Ray run
    is resumable exactly like a local one (the folder must be on storage every node sees).
    """

    def __init__(self, job: EvalJob):
        self.out = Path(job.out)
        self.by_video = pending_videos(job.read(), self.out)
        self.backend = job.load_backend()
        self.planner, self.mode = job.planner, job.mode

    def run(self, video: str) -> list[str]:
        return evaluate_video(self.backend, self.by_video.get(video, []), self.out, self.planner, self.mode)


def _run_local(job: EvalJob, todo: dict[str, list[Expression]], out: Path, bar, backend=None) -> None:
    if backend is None:
        backend = job.load_backend()
    else:
        from agent.evaluation.report import record_provenance

        record_provenance(out, backend)
    for expressions in todo.values():
        evaluate_video(backend, expressions, out, job.planner, job.mode)
        bar.update()


def run_evaluation(job: EvalJob, ray_address: str | None = None, workers: int | None = None, progress: bool = True, backend=None) -> dict:
    """Evaluate `job`; `backend` reuses an already loaded backend for a local run."""
    from agent.evaluation.report import build_report, write_plots, write_submission_zip

    dataset = job.read()
    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    todo = pending_videos(dataset, out)
    videos = dataset.videos()
    bar = tqdm(total=len(videos), initial=len(videos) - len(todo), unit="video", desc="eval", disable=not progress)
    if todo:
        if ray_address:
            run_on_ray(EvalWorker, (job,), list(todo), ray_address, workers, bar)
        else:
            _run_local(job, todo, out, bar, backend)
    bar.close()
    report = build_report(dataset, out, job)
    _write_json(out / "report.json", report)
    write_submission_zip(dataset, out)
    if dataset.has_gt:
        write_plots(report, out / "plots")
    return report
