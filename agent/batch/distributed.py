"""`rvos batch --ray`: the items spread over a Ray cluster, one worker per GPU (or per `--workers` on CPUs),
one loaded backend each, as `rvos eval --ray` does. Workers write into the same output folder, so it must be
on storage every node sees; a run on Ray resumes like a local one."""

from __future__ import annotations

from pathlib import Path

from agent.batch.manifest import BatchItem
from agent.batch.work import BatchJob, one_line, run_item
from agent.distributed import connect, worker_pool
from agent.errors import UserError


class BatchWorker:
    """One Ray worker: one loaded backend, items in turn (a backend that fails to load is reported by `ready`)."""

    def __init__(self, job: BatchJob):
        self.job, self.error = job, None
        try:
            self.backend = job.load_backend()
        except Exception as exc:
            self.error = one_line(exc)

    def ready(self) -> str | None:
        return self.error

    def run(self, item: BatchItem) -> dict:
        if self.error:  # a replacement for a worker that died could not load the backend
            return {"status": "failed", "error": f"a Ray worker could not load the backend: {self.error}"}
        return run_item(self.backend, item, Path(self.job.out), self.job.overlay, progress=False)


def run_on_ray(job: BatchJob, todo: list[BatchItem], address: str, workers: int | None, finished) -> None:
    connected = connect(address)  # first: it says how to get Ray when it is missing
    import ray

    try:
        remote, count = worker_pool(BatchWorker, workers, len(todo))
        idle = [remote.remote(job) for _ in range(count)]
        try:
            error = next((e for e in ray.get([actor.ready.remote() for actor in idle]) if e), None)
        except ray.exceptions.RayError as exc:  # a worker died while loading (out of memory, a crash)
            error = f"it died ({one_line(exc)[:300]})"
        if error:
            raise UserError(f"a Ray worker could not load the backend: {error}")
        queue, running = list(todo), {}
        while queue or running:
            while idle and queue:
                actor, item = idle.pop(), queue.pop(0)
                running[actor.run.remote(item)] = (actor, item)
            (ref,), _ = ray.wait(list(running), num_returns=1)
            actor, item = running.pop(ref)
            try:
                outcome = ray.get(ref)
                idle.append(actor)
            except ray.exceptions.RayTaskError as exc:  # raised outside run_item's own catch: the item fails, the worker goes on
                outcome = {"status": "failed", "error": one_line(getattr(exc, "cause", None) or exc)}
                idle.append(actor)
            except ray.exceptions.RayError as exc:  # the worker died (out of memory, a crash): its item fails
                outcome = {"status": "failed", "error": f"the Ray worker running it died: {one_line(exc)[:500]}"}
                idle.append(remote.remote(job))
            finished(item, outcome)
    finally:
        if connected:
            ray.shutdown()
