"""Work spread over a Ray cluster: one worker per GPU (or per `--workers` on CPUs), one model each.

Nothing here knows what the work is: the caller names a worker class (built once on each Ray worker
from `worker_args`, where it loads its model) and the items, and each item goes to one worker's `run`.
"""

from __future__ import annotations

from agent.errors import UserError


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


def run_on_ray(worker: type, worker_args: tuple, items: list, address: str, workers: int | None, bar) -> None:
    """`worker(*worker_args).run(item)` for every item, on a pool of Ray actors; `bar` ticks once per item."""
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise UserError("--ray needs Ray: pip install 'rvos-agent[ray]'") from None
    connect(address)
    try:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        count = max(1, min(workers or gpus or 2, len(items)))
        remote = ray.remote(num_gpus=1)(worker) if gpus else ray.remote(num_cpus=1)(worker)
        pool = ActorPool([remote.remote(*worker_args) for _ in range(count)])
        for _ in pool.map_unordered(lambda actor, item: actor.run.remote(item), items):
            bar.update()
    finally:
        ray.shutdown()
