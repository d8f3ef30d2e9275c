"""Work spread over a Ray cluster: one worker per GPU (or per `--workers` on CPUs), one model each.

Nothing here knows what the work is: the caller names a worker class (built once on each Ray worker
from `worker_args`, where it loads its model) and the items, and each item goes to one worker's `run`.
"""

from __future__ import annotations

import sys

from agent.errors import UserError


def connect(address: str) -> bool:
    """Join the Ray cluster at `address` (auto: a running one, else one started here); False when this process
    already had Ray (a notebook's, a test's), which the caller then leaves running."""
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs Ray: pip install 'rvos-agent[ray]'") from None

    if ray.is_initialized():
        return False
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
    return True


def worker_pool(worker: type, workers: int | None, items: int):
    """(the worker class as a Ray actor needing one GPU, or one CPU on a cluster without GPUs; how many to start).
    Never more than the cluster can place at once: an actor that can never start would wait for ever."""
    import ray

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    slots = gpus or max(1, int(resources.get("CPU", 1)))
    wanted = workers or gpus or 2
    if wanted > slots:
        print(f"rvos: --workers {wanted} is more than the cluster can run at once ({slots} {'GPUs' if gpus else 'CPUs'}); "
              f"starting {slots}", file=sys.stderr)
    count = max(1, min(wanted, slots, items))
    return (ray.remote(num_gpus=1)(worker) if gpus else ray.remote(num_cpus=1)(worker)), count


def run_on_ray(worker: type, worker_args: tuple, items: list, address: str, workers: int | None, bar) -> None:
    """`worker(*worker_args).run(item)` for every item, on a pool of Ray actors; `bar` ticks once per item."""
    connected = connect(address)  # first: it says how to get Ray when it is missing
    import ray
    from ray.util import ActorPool

    try:
        remote, count = worker_pool(worker, workers, len(items))
        pool = ActorPool([remote.remote(*worker_args) for _ in range(count)])
        for _ in pool.map_unordered(lambda actor, item: actor.run.remote(item), items):
            bar.update()
    except ray.exceptions.RayError as exc:  # a worker died (out of memory, a crash): finished videos are kept
        raise UserError(f"a Ray worker failed: {' '.join(str(exc).split())[:300]}; re-run the same command to resume") from None
    finally:
        if connected:
            ray.shutdown()
