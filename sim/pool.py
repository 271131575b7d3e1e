"""Worker processes that end a map at once when one of them fails.

:class:`sim.executors.Processes` runs its tasks here.  ``multiprocessing.Pool`` is not used because it
hides the two failures a user meets on a new machine: a worker whose start-up raises is replaced by
another that raises the same way, without end, and a worker killed mid-task (SIGKILL, the kernel's
out-of-memory killer) leaves ``Pool.imap`` waiting for work that will never come.  Here the parent
watches every worker's pipe and its process sentinel together (:func:`multiprocessing.connection.wait`),
so any of these ends the map within a second with one :class:`~sim.errors.WorkerError` naming the
cause:

* a worker's start-up (``initializer``) raises: the first worker's exception, e.g. a module that is not
  installed;
* a worker dies: its exit status or the signal that killed it;
* a task raises: that exception itself, re-raised here with the worker's traceback attached as its cause
  (so a :class:`~sim.errors.FiscalsimError` raised by a task reads as it would in this process).

The parent then terminates the other workers and waits for them, so nothing is left running.  Workers
ignore SIGINT: Ctrl-C reaches the whole process group, and only the parent decides what it means (it
raises ``KeyboardInterrupt`` here, and the workers are ended).  A worker whose parent disappears sees its
pipe close and exits.

Items travel in runs of consecutive items (``chunk``), one run per worker at a time; each result comes
back as soon as it is done, so progress is told item by item whatever the run length, and results are
returned in item order whatever order they finish in.
"""

from __future__ import annotations

import os
import pickle
import signal
import traceback
from collections.abc import Callable, Sequence
from multiprocessing import connection
from typing import Any

from sim.errors import WorkerError

START_FAILED, DONE, RAISED = "start-failed", "done", "raised"
STOP_WAIT_S = 2.0  # how long a worker asked to stop may take before it is killed


class RemoteTraceback(Exception):
    """A worker's traceback, attached as the ``__cause__`` of the exception it raised."""

    def __str__(self) -> str:
        return self.args[0]


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, otherwise a RuntimeError that says what it was."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any exception that cannot travel is described instead
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _serve(conn, task: Callable, shared: Any, initializer: Callable | None, inherited: list) -> None:
    """A worker's life: start up, then run each run of items sent to it until told to stop (None) or its
    parent goes away (the pipe closes)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's handler (sim.cli) is not the worker's
    for other in inherited:  # the parent's ends of other workers' pipes, copied by fork: close them so that
        other.close()  # those workers see their pipe close when the parent goes away
    try:
        if initializer is not None:
            initializer()
    except BaseException as exc:  # noqa: BLE001 - any failure to start is reported, never retried
        conn.send((START_FAILED, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        return
    while True:
        try:
            work = conn.recv()
        except (EOFError, OSError):
            return
        if work is None:
            return
        first, items = work
        for k, item in enumerate(items):
            try:
                result = task(shared, item)
            except BaseException as exc:  # noqa: BLE001 - sent back whole, raised in the parent
                conn.send((RAISED, first + k, (_portable(exc), traceback.format_exc())))
                return
            conn.send((DONE, first + k, result))


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(code).name
    except ValueError:
        return f"signal {code}"


def died_message(pid: int, exitcode: int | None) -> str:
    """What a worker's end says, in words a user can act on."""
    if exitcode is not None and exitcode < 0:
        name = _signal_name(-exitcode)
        why = (" (the system's out-of-memory killer sends this: try fewer --threads, fewer replications or a "
               "smaller population)") if -exitcode == signal.SIGKILL else ""
        return f"a worker process (pid {pid}) was killed by {name}{why}"
    return f"a worker process (pid {pid}) ended unexpectedly with exit status {exitcode}"


class Workers:
    """``count`` worker processes from the multiprocessing ``context``, each running ``task(shared, item)``
    after ``initializer()``; a context manager that ends them all on the way out."""

    def __init__(self, context, count: int, task: Callable, shared: Any, initializer: Callable | None = None):
        self.processes: list = []
        self.conns: list = []
        forked = context.get_start_method() == "fork"
        try:
            for _ in range(count):
                mine, theirs = context.Pipe()
                inherited = [*self.conns, mine] if forked else []  # what a forked child holds a copy of
                process = context.Process(target=_serve, args=(theirs, task, shared, initializer, inherited),
                                          daemon=True)
                process.start()
                theirs.close()
                self.processes.append(process)
                self.conns.append(mine)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def map(self, items: Sequence, chunk: int, progress: Callable[[int], None] | None = None) -> list:
        """Every item's result, in item order; raises at the first failure (see the module's docstring)."""
        runs = [(lo, list(items[lo:lo + chunk])) for lo in range(0, len(items), chunk)]
        runs.reverse()  # popped from the end: first run first
        out: list = [None] * len(items)
        left = {}  # worker index -> items of its current run still to come back

        def give(k: int) -> None:
            first, run = runs.pop()
            try:
                self.conns[k].send((first, run))
            except OSError:  # the worker is gone: what it said before it went, or how it ended
                self._raise_failure(k)
            left[k] = len(run)
        for k in range(len(self.conns)):
            if runs:
                give(k)
        done = 0
        sentinels = {p.sentinel: k for k, p in enumerate(self.processes)}
        readers = {c: k for k, c in enumerate(self.conns)}
        while done < len(items):
            ready = connection.wait(self.conns + list(sentinels), timeout=1.0)
            # Messages first: a worker that reported its failure and then exited is told by its message.
            for conn in sorted((r for r in ready if r in readers), key=readers.get):
                k = readers[conn]
                index, payload = self._receive(k)
                out[index] = payload
                done += 1
                left[k] -= 1
                if progress is not None:
                    progress(1)
                if left[k] == 0 and runs:
                    give(k)
            for sentinel in (r for r in ready if r in sentinels):
                k = sentinels[sentinel]
                if not self.conns[k].poll():  # its last message, if any, is read on the next round
                    self._raise_failure(k)
        return out

    def _receive(self, k: int) -> tuple[int, Any]:
        """Worker ``k``'s next result (item index, result); raises what the worker reports or how it ended."""
        try:
            kind, index, payload = self.conns[k].recv()
        except (EOFError, OSError):
            process = self.processes[k]
            process.join(STOP_WAIT_S)
            raise WorkerError(died_message(process.pid, process.exitcode) + "; the run stopped") from None
        if kind == START_FAILED:
            raise WorkerError(f"a worker process could not start: {index}{_hint(index)}") from RemoteTraceback(payload)
        if kind == RAISED:
            exc, text = payload
            raise exc from RemoteTraceback(text)
        return index, payload

    def _raise_failure(self, k: int) -> None:
        """Worker ``k`` is gone: raise the failure it reported before it went, or how it ended."""
        while True:
            self._receive(k)  # results it sent before failing are of no use now; its last word raises

    def close(self) -> None:
        """Ask every worker to stop, terminate those that do not, and wait for all of them."""
        for conn in self.conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for process in self.processes:
            process.join(0.2)
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(STOP_WAIT_S)
            if process.is_alive():
                os.kill(process.pid, signal.SIGKILL)
                process.join()
        for conn in self.conns:
            conn.close()
        self.processes, self.conns = [], []


def _hint(cause: str) -> str:
    """What to do about a worker that could not start."""
    if cause.startswith(("ModuleNotFoundError", "ImportError")):
        return " (a module fiscalsim needs is not installed: reinstall it with `python3 -m pip install .`)"
    return ""
