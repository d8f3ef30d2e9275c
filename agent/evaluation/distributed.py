"""Videos spread over a Ray cluster: one worker per GPU (or per `--workers` on CPUs), one model each.

Workers write into the same output folder with the same per-expression markers, so a Ray run
is resumable exactly like a local one (the folder must be on storage every node sees).
"""

from __future__ import annotations

from pathlib import Path

from agent.errors import UserError


class EvalWorker:
    def __init__(self, job):
        from agent.evaluation.runner import pending_videos

        self.out = Path(job.out)
        self.by_video = pending_videos(job.read(), self.out)
        self.backend = job.load_backend()
        self.planner = job.planner

    def run(self, video: str) -> list[str]:
        from agent.evaluation.runner import evaluate_video

        return evaluate_video(self.backend, self.by_video.get(video, []), self.out, self.planner)


def connect(address: str) -> None:
    import ray

    try:
        if address == "auto":
            try:
                ray.init(address="auto", log_to_driver=False)
            except ConnectionError:  # no cluster running: start one on this machine
                ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except ConnectionError as exc:
        raise UserError(f"cannot reach the Ray cluster at {address}: {exc}; start it or use --ray auto") from None


def run_on_ray(job, videos: list[str], out: Path, address: str, workers: int | None, bar) -> None:
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise UserError("--ray needs Ray: pip install 'rvos-agent[ray]'") from None
    connect(address)
    try:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        count = max(1, min(workers or gpus or 2, len(videos)))
        remote = ray.remote(num_gpus=1)(EvalWorker) if gpus else ray.remote(num_cpus=1)(EvalWorker)
        pool = ActorPool([remote.remote(job) for _ in range(count)])
        for _ in pool.map_unordered(lambda actor, video: actor.run.remote(video), videos):
            bar.update()
    finally:
        ray.shutdown()
