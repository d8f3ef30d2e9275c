"""Running `rvos batch`'s items: each through `rvos segment`'s pipeline into `DIR/<item>/`, one loaded backend
in turn here or one per Ray worker, with `DIR/batch.json` rewritten after every item."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from agent.batch.distributed import run_on_ray  # Ray itself is imported only when it is asked for
from agent.batch.manifest import SUMMARY_FILE, BatchItem
from agent.batch.work import BatchJob, is_finished, run_item
from agent.errors import UserError


def _write_summary(path: Path, summary: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(summary, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def _earlier_requests(path: Path) -> dict[str, dict]:
    """Each item's request as an earlier run recorded it in `DIR/batch.json` (none yet: empty); a batch.json
    that this command did not write is refused, never replaced."""
    if not path.exists():
        return {}
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
        results = earlier["results"] if isinstance(earlier, dict) and "items" in earlier else None
    except (OSError, ValueError, KeyError):
        results = None
    if not isinstance(results, list) or not all(isinstance(r, dict) and "name" in r for r in results):
        raise UserError(f"{path} is not a summary that rvos batch wrote; choose another --out (it is left as it is)")
    return {r["name"]: r.get("request") for r in results}


def _request(job: BatchJob, item: BatchItem) -> dict:
    """What shapes an item's output: a re-run skips the item only when this is unchanged (a mask file by content)."""
    from agent.downloads import sha256

    def mask_digest(spec: str) -> str:
        file = spec.rsplit("@", 1)[0]
        try:
            return sha256(Path(file))
        except OSError:
            return "missing"  # the item fails when it runs, and so is never skipped

    return {"video": item.video, "instruction": item.instruction, "masks": [[m, mask_digest(m)] for m in item.masks],
            "boxes": list(item.boxes), "points": list(item.points), "backend": job.backend, "model": job.model,
            "device": job.device, "options": {k: str(v) for k, v in sorted(job.backend_options.items())}, "overlay": job.overlay}


def run_batch(job: BatchJob, items: list[BatchItem], source: str = "", ray_address: str | None = None,
              workers: int | None = None, progress: bool = True, backend=None) -> dict:
    """Every unfinished item, locally (`backend`, or one loaded from `job`) or on Ray; returns the summary that
    `DIR/batch.json` holds."""
    from tqdm.auto import tqdm

    out = Path(job.out).expanduser().absolute()
    job = replace(job, out=str(out))  # Ray workers may start in another folder
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write to {out}: {exc.strerror}; choose a writable --out") from None
    earlier = _earlier_requests(out / SUMMARY_FILE)
    requests = {item.name: _request(job, item) for item in items}
    # an item's request is recorded once its output is whole, so an interrupted run never vouches for an older output
    skip = {item.name for item in items if earlier.get(item.name) == requests[item.name] and is_finished(out / item.name, item)}
    results = {item.name: {"name": item.name, "line": item.line, "video": item.video, "instruction": item.instruction,
                           "request": requests[item.name] if item.name in skip else None,
                           "status": "skipped" if item.name in skip else "pending"} for item in items}
    todo = [item for item in items if results[item.name]["status"] == "pending"]

    def summary() -> dict:
        counts = {status: sum(r["status"] == status for r in results.values()) for status in ("done", "skipped", "failed", "pending")}
        return {"input": source, "out": str(out), "items": len(items), **counts, "results": list(results.values())}

    bar = tqdm(total=len(items), initial=len(items) - len(todo), unit="video", desc="batch", disable=not progress)

    def finished(item: BatchItem, outcome: dict) -> None:
        results[item.name].update(outcome)
        if outcome.get("status") == "done":
            results[item.name]["request"] = requests[item.name]
        _write_summary(out / SUMMARY_FILE, summary())
        bar.update()

    _write_summary(out / SUMMARY_FILE, summary())
    try:
        if todo and ray_address:
            run_on_ray(job, todo, ray_address, workers, finished)
        elif todo:
            backend = backend or job.load_backend()
            for item in todo:
                bar.set_postfix_str(item.name)  # the video in progress
                finished(item, run_item(backend, item, out, job.overlay, progress))
    finally:
        bar.close()
    return summary()


def print_summary(summary: dict) -> None:
    print(f"{summary['items']} video{'s' if summary['items'] != 1 else ''}: {summary['done']} done, {summary['skipped']} skipped (already finished), "
          f"{summary['failed']} failed")
    for result in summary["results"]:
        if result["status"] == "failed":
            print(f"  failed: {result['name']}: {result['error']}")  # a manifest item's name starts with its line
    print(f"summary: {Path(summary['out']) / SUMMARY_FILE}")
