"""report.json, submission.zip and plots of an evaluation folder."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from agent.evaluation.datasets import Dataset

METRICS = ("J", "F", "tIoU", "vIoU", "A", "R")
PROVENANCE = "provenance.json"  # the loaded backend's provenance, beside the predictions it made


def record_provenance(out: Path, backend) -> None:
    """Keep what the loaded backend ran with in the evaluation folder (report.json takes it from there, also on
    a resumed run that loads no backend). Written under a name of its own and renamed: Ray workers write it too."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{PROVENANCE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(backend.provenance(), indent=1))
    os.replace(tmp, out / PROVENANCE)


def provenance(out: Path, job) -> dict:
    """What shaped the scores, so that they can be reproduced: the package version, the backend, model, device and
    options asked for, the planner's settings, and, once a backend has run, every setting it ran with."""
    from agent import __version__

    planner = getattr(job, "planner", None)
    record = {"rvos_agent": __version__, "backend": job.backend, "model": job.model, "device": job.device, "mode": job.mode,
              "options": {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in (job.backend_options or {}).items()},
              "planner": None if planner is None else planner.settings()}
    path = out / PROVENANCE
    if path.is_file():
        record |= json.loads(path.read_text())
    return record


def _mean_scores(records: list[dict]) -> dict:
    scored = [r["scores"] for r in records if "scores" in r]
    if not scored:
        return {}
    out = {m: float(np.mean([s[m] for s in scored])) for m in METRICS if all(m in s for s in scored)}
    out["JF"] = (out["J"] + out["F"]) / 2
    out["expressions"] = len(scored)
    return out


def target_accuracy(records: list[dict]) -> dict:
    """MeViS v2: N-acc, the share of no-target expressions answered with no mask on any frame, and T-acc,
    the share of target expressions answered with a mask somewhere (only where the dataset says which is which)."""
    asked = [r for r in records if "has_target" in r and "answered_empty" in r]
    without = [r["answered_empty"] for r in asked if not r["has_target"]]
    with_target = [not r["answered_empty"] for r in asked if r["has_target"]]
    out = {}
    if without:
        out["N_acc"], out["no_target_expressions"] = float(np.mean(without)), len(without)
    if with_target:
        out["T_acc"] = float(np.mean(with_target))
    return out


def load_records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "scores").glob("*/*.json"))]


def build_report(dataset: Dataset, out: Path, job) -> dict:
    records = load_records(out)
    done = {f"{r['video']}/{r['exp_id']}" for r in records}
    failures = {}
    for path in sorted((out / "failures").glob("*/*.json")):
        failure = json.loads(path.read_text())
        failures[f"{failure['video']}/{failure['exp_id']}"] = failure["error"]
    report: dict = {
        "dataset": dataset.name, "split": dataset.split, **provenance(out, job),
        "expressions_total": len(dataset.expressions), "expressions_done": len(done),
        "failures": failures,
        "expressions": {
            f"{r['video']}/{r['exp_id']}": {
                "expression": r["expression"], "category": r["category"], "answer": r["answer"],
                "seconds": r["seconds"], "frames": r["frames"], **r.get("scores", {}),
            }
            for r in records
        },
    }
    frames = sum(r["frames"] for r in records)
    report["seconds_per_frame"] = round(sum(r["seconds"] for r in records) / frames, 4) if frames else None
    categories = sorted({r["category"] for r in records if r["category"]})
    if categories:
        report["by_category"] = {c: _mean_scores([r for r in records if r["category"] == c]) for c in categories}
    if dataset.name == "revos" and categories:
        # ReVOS: overall is the mean of the referring and reasoning means
        parts = [report["by_category"][c] for c in categories if report["by_category"][c]]
        report["overall"] = {m: float(np.mean([p[m] for p in parts])) for m in parts[0] if m != "expressions"}
    else:
        report["overall"] = _mean_scores(records)
    report["overall"].update(target_accuracy(records))
    report["videos"] = {
        video: _mean_scores([r for r in records if r["video"] == video]) for video in dataset.videos()
    }
    return report


def write_submission_zip(dataset: Dataset, out: Path) -> Path:
    """The predictions in the layout evaluation servers take (`<prefix>/<video>/<exp_id>/<frame>.png`)."""
    target = out / "submission.zip"
    tmp = out / ".submission.zip.tmp"
    predictions = out / "predictions"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(predictions.glob("*/*/*.png")):
            name = path.relative_to(predictions).as_posix()
            if name.split("/")[1].startswith("."):
                continue  # an expression still being written
            archive.write(path, f"{dataset.submission_prefix}/{name}" if dataset.submission_prefix else name)
    os.replace(tmp, target)
    return target


def write_plots(report: dict, folder: Path) -> list[Path]:
    """Per-video J&F bars and J over time, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    videos = {v: s for v, s in report["videos"].items() if s}
    if videos:
        fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(videos) + 2), 3.5))
        ax.bar(list(videos), [s["JF"] for s in videos.values()], color="#3b75af")
        ax.set_ylim(0, 1)
        ax.set_ylabel("J&F")
        ax.set_title(f"{report['dataset']} — {report['backend']}: J&F per video (overall {report['overall'].get('JF', 0):.3f})")
        ax.tick_params(axis="x", rotation=45)
        fig.tight_layout()
        written.append(folder / "jf_per_video.png")
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)
    records = load_records(folder.parent)
    curves = [r for r in records if r.get("per_frame_J")]
    if curves:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for r in curves[:20]:
            frames, j = zip(*r["per_frame_J"])
            ax.plot(frames, j, label=f"{r['video']}/{r['exp_id']}", linewidth=1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("frame")
        ax.set_ylabel("J")
        ax.set_title("J over time")
        ax.legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        written.append(folder / "j_over_time.png")
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)
    return written
