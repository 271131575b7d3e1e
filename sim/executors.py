"""Where the replications run: in this process, or on a Dask cluster.

An executor maps a task function over items (replications, sensitivity variants) with one shared
argument (the policy, population and settings), which travels to each worker once.  Results come back
in item order whatever order they finish in, so results never depend on the executor; a ``progress``
callback is told of every item done.  Tasks must be module-level functions (they are pickled).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from sim.errors import FiscalsimError


class Serial:
    """Run every task here, one after the other."""

    workers = 1
    name = "in-process"

    def map(self, task: Callable, shared: Any, items: Sequence, progress: Callable[[int], None] | None = None) -> list:
        out = []
        for item in items:
            out.append(task(shared, item))
            if progress is not None:
                progress(1)
        return out

    def close(self) -> None:
        pass


class Dask:
    """Run tasks on a ``dask.distributed`` client (a local cluster or a remote scheduler)."""

    name = "dask"

    def __init__(self, client, cluster=None):
        self.client, self.cluster = client, cluster

    @property
    def workers(self) -> int:
        return len(self.client.scheduler_info().get("workers", {}))

    def map(self, task: Callable, shared: Any, items: Sequence, progress: Callable[[int], None] | None = None) -> list:
        from dask.distributed import as_completed

        if not items:
            return []
        [shared_future] = self.client.scatter([shared], broadcast=True)
        futures = {self.client.submit(task, shared_future, item, pure=False): k for k, item in enumerate(items)}
        out: list = [None] * len(items)
        for future in as_completed(futures):
            out[futures[future]] = future.result()
            if progress is not None:
                progress(1)
        return out

    def close(self) -> None:
        """Shut the client (and a cluster this executor started) down quietly: the workers' heartbeat and
        connection messages while they stop are not the user's business."""
        with _quiet("distributed", "tornado", "asyncio"):
            with contextlib.suppress(Exception):
                self.client.close()
            if self.cluster is not None:
                with contextlib.suppress(Exception):
                    self.cluster.close()


@contextlib.contextmanager
def _quiet(*loggers: str):
    """Raise the named loggers to CRITICAL for the duration, then put their levels back."""
    import logging

    saved = {name: logging.getLogger(name).level for name in loggers}
    try:
        for name in loggers:
            logging.getLogger(name).setLevel(logging.CRITICAL)
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


# Environment of each local worker process, set before it starts (Dask sets it in this process too): one
# thread for BLAS/OpenMP (each worker is one core's worth of work), and no MALLOC_TRIM_THRESHOLD_ (Dask sets
# 64 KiB by default, which turns off glibc's adaptive mmap threshold: every array of the population is then
# mapped and faulted in afresh, and the same work runs about twice as slowly as in-process).
WORKER_ENVIRON = {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1}


def local_cluster(workers: int):
    """A local Dask cluster of ``workers`` single-threaded processes, each set up as :data:`WORKER_ENVIRON`."""
    import dask
    from dask.distributed import LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ": dict(WORKER_ENVIRON)}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)


def dask(workers: int = 0, scheduler: str | None = None) -> Dask:
    """A Dask executor: a local cluster of ``workers`` processes, or the scheduler at ``scheduler``."""
    try:
        from dask.distributed import Client
    except ImportError:
        raise FiscalsimError("--workers and --scheduler need Dask: pip install 'fiscalsim[dask]'") from None
    if scheduler:
        try:
            return Dask(Client(scheduler, timeout=20))
        except OSError as exc:
            raise FiscalsimError(f"--scheduler {scheduler}: cannot connect: {exc}") from None
    cluster = local_cluster(workers)
    return Dask(Client(cluster), cluster)
