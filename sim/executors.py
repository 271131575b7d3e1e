"""Where the replications run: in this process, on this machine's cores, or on a Dask cluster.

An executor maps a task function over items (replications, sensitivity variants) with one shared
argument (the policy, population and settings), which travels to each worker once.  Results come back
in item order whatever order they finish in, so results never depend on the executor; a ``progress``
callback is told of every item done.  Tasks must be module-level functions (they are pickled).

Threads have one owner: :func:`local` decides how many worker processes run (one per core by default,
``--threads`` for the user), and every worker, like every Dask worker, holds BLAS/OpenMP to one thread
(:func:`one_thread_each`), so no library spins a second thread against the workers.  The compiled kernels
then run on one thread each too: the claims engine's generation blocks (at most 65,536 claimants) stay
below the size at which :mod:`sim.fused` would start its own thread pool.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from sim import pool
from sim.errors import FiscalsimError, WorkerError


def cores() -> int:
    """The CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def one_thread_each() -> None:
    """Hold BLAS and OpenMP in this (worker) process to one thread (numba's own pool is never started: see
    above)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _threads(limit: int | None):
    """BLAS/OpenMP held to ``limit`` threads for the duration (None: as they are)."""
    if limit is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limit)


class Serial:
    """Run every task here, one after the other (with ``one_thread``, BLAS/OpenMP held to one thread while
    they run, then given back what they had)."""

    workers = 1
    name = "in-process"

    def __init__(self, one_thread: bool = False):
        self.one_thread = one_thread

    def map(self, task: Callable, shared: Any, items: Sequence, progress: Callable[[int], None] | None = None) -> list:
        out = []
        with _threads(1 if self.one_thread else None):
            for item in items:
                out.append(task(shared, item))
                if progress is not None:
                    progress(1)
        return out

    def close(self) -> None:
        pass


class Processes:
    """Run tasks on ``workers`` processes of this machine, results in item order.

    Each ``map`` starts its workers and ends them (:class:`sim.pool.Workers`): forked where the platform
    allows (Linux), so they begin with everything this process has imported and compiled and the shared
    argument is not even pickled; started afresh elsewhere.  A worker that cannot start or dies ends the
    map at once with a :class:`~sim.errors.WorkerError` naming the cause.
    """

    name = "processes"

    def __init__(self, workers: int):
        if workers < 1:
            raise FiscalsimError(f"--threads must be >= 1, got {workers}")
        self.workers = workers

    def map(self, task: Callable, shared: Any, items: Sequence, progress: Callable[[int], None] | None = None) -> list:
        if len(items) < 2:
            return Serial().map(task, shared, items, progress)
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        # Runs of consecutive items per worker (about eight per worker): replications of one assumption draw
        # mostly land on one worker, which builds that draw's model once.
        chunk = max(1, -(-len(items) // (8 * self.workers)))
        with warnings.catch_warnings():
            # Python >= 3.12 warns that forking a process with threads (BLAS's idle pool) may deadlock a child
            # that uses them; the workers hold BLAS to one thread and start no other pool.
            warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
            workers = pool.Workers(context, min(self.workers, len(items)), task, shared, initializer=one_thread_each)
        with workers:
            return workers.map(items, chunk, progress)

    def close(self) -> None:
        pass


def local(threads: int | None = None):
    """The executor for this machine: ``threads`` worker processes (default: one per core), or this process
    itself for one thread (BLAS then held to one thread while the tasks run) and inside a daemonic process (a
    ``multiprocessing.Pool`` worker, which may not start processes of its own)."""
    threads = cores() if threads is None else threads
    if threads < 1:
        raise FiscalsimError(f"--threads must be >= 1, got {threads}")
    if threads == 1 or multiprocessing.current_process().daemon:
        return Serial(one_thread=True)
    return Processes(threads)


MAX_RUN = 40  # items of one Dask task at most (eight assumption draws of five replications)


def _run_items(task: Callable, shared: Any, items: Sequence) -> list:
    """A run of consecutive items on one Dask worker, in order."""
    return [task(shared, item) for item in items]


class Dask:
    """Run tasks on a ``dask.distributed`` client (a local cluster or a remote scheduler)."""

    name = "dask"

    def __init__(self, client, cluster=None, where: str = "the local Dask cluster"):
        self.client, self.cluster, self.where = client, cluster, where

    @property
    def workers(self) -> int:
        return len(self.client.scheduler_info().get("workers", {}))

    def map(self, task: Callable, shared: Any, items: Sequence, progress: Callable[[int], None] | None = None) -> list:
        """Every item's result in item order.  A lost scheduler (or connection to it) ends the map with one
        :class:`~sim.errors.WorkerError`; the client's own tracebacks about it are not shown.  A worker that
        dies is Dask's to recover: its tasks run again elsewhere, with the same results."""
        from concurrent.futures import CancelledError

        from dask.distributed import as_completed

        if not items:
            return []
        try:
            with _quiet("distributed.client"):
                return self._map(as_completed, task, shared, items, progress)
        except (CancelledError, OSError, TimeoutError) as exc:
            if self.client.status == "running" and not isinstance(exc, CancelledError):
                raise
            # The client goes on trying to reconnect in its own thread, logging a traceback when it gives up: it is
            # of no use now, so its logger stays quiet for the rest of this process.
            logging.getLogger("distributed.client").setLevel(logging.CRITICAL)
            self.close()
            raise WorkerError(f"{self.where}: lost the Dask scheduler during the run "
                              f"({type(exc).__name__}); check that it is running and run again") from None

    def _map(self, as_completed, task, shared, items, progress) -> list:
        [shared_future] = self.client.scatter([shared], broadcast=True)
        # Runs of consecutive items per task (about eight per worker), as for Processes: replications of one
        # assumption draw mostly land on one worker, which builds that draw's model once; at most
        # MAX_RUN items, so progress is told every few seconds however many items there are.
        size = min(max(1, -(-len(items) // (8 * max(1, self.workers)))), MAX_RUN)
        runs = [list(items[lo:lo + size]) for lo in range(0, len(items), size)]
        futures = {self.client.submit(_run_items, task, shared_future, run, pure=False): k
                   for k, run in enumerate(runs)}
        done: list = [None] * len(runs)
        for future in as_completed(futures):
            done[futures[future]] = future.result()
            if progress is not None:
                progress(len(done[futures[future]]))
        return [result for run in done for result in run]

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
            return Dask(Client(scheduler, timeout=20), where=f"--scheduler {scheduler}")
        except OSError as exc:
            raise FiscalsimError(f"--scheduler {scheduler}: cannot connect: {exc}") from None
    cluster = local_cluster(workers)
    return Dask(Client(cluster), cluster)
