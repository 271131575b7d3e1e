"""A run that cannot go on stops at once, says why in one line, and leaves nothing that loads.

Faults injected for real: a worker whose start-up raises (the module it needs is missing), a worker
killed with SIGKILL in the middle of `fiscalsim run -r 300`, Ctrl-C (SIGINT to the process group), a task
that raises; an output location that cannot be written (a read-only file system, a parent that is a
file, a disk too small), two runs into one folder, the staging folders of killed runs, a run too big for
the machine; a Dask worker killed (recovered, the same bytes) and a Dask scheduler lost.  Every case is
bounded in time: a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim import executors, montecarlo, pipeline, results
from sim.cli import main
from sim.errors import FiscalsimError, WorkerError

ROOT = Path(__file__).resolve().parents[1]
BAR = b"1 population and awards"  # the claims stage's progress bar: the workers are about to start
ENDS_WITHIN_S = 10.0


class Running:
    """``fiscalsim ARGS`` in a subprocess of its own process group, its stderr collected as it comes."""

    def __init__(self, args: list[str], prelude: str = ""):
        code = f"import sys\n{prelude}\nfrom sim.cli import main\nsys.exit(main(sys.argv[1:]))"
        self.proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self.err = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for chunk in iter(lambda: self.proc.stderr.read1(4096), b""):
            self.err += chunk

    def wait_for(self, text: bytes, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.err:
            assert self.proc.poll() is None, f"ended before {text!r}: {self.stderr}"
            assert time.monotonic() < deadline, f"no {text!r} within {timeout} s: {self.stderr}"
            time.sleep(0.05)

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except OSError:
            return []

    def wait_for_workers(self, count: int = 2, timeout: float = 60.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while len(self.children()) < count:
            assert self.proc.poll() is None, self.stderr
            assert time.monotonic() < deadline, f"no {count} workers within {timeout} s: {self.stderr}"
            time.sleep(0.05)
        return self.children()

    def ended(self, timeout: float = ENDS_WITHIN_S) -> tuple[int, float]:
        """Exit status and seconds taken to end from now; fails (and kills the group) past ``timeout``."""
        start = time.monotonic()
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"still running {timeout} s after the fault: {self.stderr[-2000:]}")
        self.reader.join(5)
        return code, time.monotonic() - start

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    @property
    def stderr(self) -> str:
        return self.err.decode(errors="replace")


@pytest.fixture
def running():
    started = []

    def start(*args, **kwargs):
        started.append(Running(*args, **kwargs))
        return started[-1]
    yield start
    for run in started:
        if run.proc.poll() is None:
            run.kill()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def last_line(text: str) -> str:
    return [line for line in text.replace("\r", "\n").splitlines() if line.strip()][-1]


def nothing_loads(out: Path) -> None:
    with pytest.raises(FiscalsimError):
        results.load(out)
    assert not out.exists()
    for path in out.parent.glob(f".{out.name}.partial-*"):
        pytest.fail(f"staging folder left behind by a run that ended on its own: {path}")


# ----------------------------------------------------------------------------- worker processes
def test_a_worker_that_cannot_start_ends_the_run_with_its_cause(tmp_path, running):
    out = tmp_path / "run"
    # The fault of the issue: every worker's start-up needs threadpoolctl, which is not installed.
    run = running(["run", "-r", "300", "--out", str(out)], prelude="sys.modules['threadpoolctl'] = None")
    run.wait_for(BAR)
    code, seconds = run.ended()
    assert code == 4, run.stderr
    assert last_line(run.stderr) == ("error: a worker process could not start: ModuleNotFoundError: import of "
                                     "threadpoolctl halted; None in sys.modules (a module fiscalsim needs is not "
                                     "installed: reinstall it with `python3 -m pip install .`)")
    assert "Traceback" not in run.stderr and run.stderr.count("error:") == 1
    nothing_loads(out)


def test_a_worker_killed_mid_run_ends_it_within_seconds(tmp_path, running):
    out = tmp_path / "run"
    run = running(["run", "-r", "300", "--out", str(out)])
    run.wait_for(BAR)
    workers = run.wait_for_workers(2)
    time.sleep(1.0)  # in the middle of their tasks
    os.kill(workers[0], signal.SIGKILL)
    code, seconds = run.ended()
    assert code == 4, run.stderr
    assert last_line(run.stderr).startswith(f"error: a worker process (pid {workers[0]}) was killed by SIGKILL "
                                            "(the system's out-of-memory killer sends this")
    assert "Traceback" not in run.stderr
    nothing_loads(out)
    assert not any(alive(pid) for pid in workers)  # the other worker was ended, not orphaned


@pytest.mark.parametrize("how, code_, said", [
    ("ctrl-c", 130, "interrupted: nothing was written"),  # SIGINT to the whole group, as a terminal sends it
    ("kill", 143, "terminated: nothing was written"),  # SIGTERM to the main process (`kill PID`)
])
def test_ctrl_c_or_kill_ends_a_run_cleanly(tmp_path, running, how, code_, said):
    out = tmp_path / "run"
    run = running(["run", "-r", "300", "--out", str(out)])
    run.wait_for(BAR)
    workers = run.wait_for_workers(2)
    time.sleep(0.5)
    if how == "ctrl-c":
        os.killpg(run.proc.pid, signal.SIGINT)
    else:
        os.kill(run.proc.pid, signal.SIGTERM)
    code, seconds = run.ended()
    assert code == code_, run.stderr
    assert last_line(run.stderr) == said
    assert "Traceback" not in run.stderr
    nothing_loads(out)
    assert not any(alive(pid) for pid in workers)


def _raises_on_five(shared, item):
    if item == 5:
        raise FiscalsimError(f"{shared}: item {item} is wrong")
    return item


def _kills_itself_on_seven(shared, item):
    if item == 7:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.01)
    return item


def _never_starts():
    raise RuntimeError("no start today")


def test_a_task_that_raises_is_raised_here_with_the_worker_traceback():
    with pytest.raises(FiscalsimError, match="table: item 5 is wrong") as caught:
        executors.Processes(2).map(_raises_on_five, "table", list(range(20)))
    assert "_raises_on_five" in str(caught.value.__cause__)  # the worker's traceback, for the log


def test_the_executor_ends_at_the_first_failure_and_leaves_no_process(monkeypatch):
    start = time.monotonic()
    with pytest.raises(WorkerError, match=r"was killed by SIGKILL"):
        executors.Processes(2).map(_kills_itself_on_seven, None, list(range(200)))
    monkeypatch.setattr(executors, "one_thread_each", _never_starts)
    with pytest.raises(WorkerError, match="a worker process could not start: RuntimeError: no start today$"):
        executors.Processes(2).map(_kills_itself_on_seven, None, list(range(200)))
    assert time.monotonic() - start < ENDS_WITHIN_S
    import multiprocessing

    assert multiprocessing.active_children() == []


def test_progress_is_told_item_by_item_whatever_the_run_length():
    told = []
    assert executors.Processes(2).map(_raises_on_five, None, list(range(5)), progress=told.append) == list(range(5))
    assert told == [1] * 5


# ----------------------------------------------------------------------------- where the run goes
@contextlib.contextmanager
def mounted(tmp_path: Path, options: str):
    """A tmpfs mounted with ``options`` (root with mount rights only; skip elsewhere)."""
    folder = tmp_path / "mnt"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def refused_before_computing(monkeypatch, capsys, args: list[str]) -> str:
    """Run ``fiscalsim ARGS`` here; it must exit 2 without starting the claims stage; its one line of error."""
    def computing(ctx):
        raise AssertionError("the claims stage started")
    monkeypatch.setattr(pipeline, "claims_stage", computing)
    start = time.monotonic()
    assert main(args) == 2
    assert time.monotonic() - start < ENDS_WITHIN_S
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_a_read_only_location_is_refused_before_computing(tmp_path, monkeypatch, capsys):
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        context = contextlib.nullcontext(folder)
    else:  # root writes through permissions: a real read-only file system
        context = mounted(tmp_path, "ro,size=1m")
    with context as folder:
        err = refused_before_computing(monkeypatch, capsys, ["run", "-r", "300", "--no-progress", "--out",
                                                             str(folder / "runs" / "baseline")])
        assert err.startswith(f"error: {folder / 'runs' / 'baseline'}: cannot create its folder")
        assert "Read-only file system" in err or "Permission denied" in err
        assert list(folder.iterdir()) == []


def test_a_parent_that_is_a_file_is_refused_before_computing(tmp_path, monkeypatch, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    err = refused_before_computing(monkeypatch, capsys, ["run", "-r", "300", "--no-progress", "--out",
                                                         str(tmp_path / "notes.txt" / "run")])
    assert err == f"error: {tmp_path / 'notes.txt' / 'run'}: {tmp_path / 'notes.txt'} is a file, not a folder; " \
                  "choose another --out"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_too_little_free_space_is_refused_before_computing(tmp_path, monkeypatch, capsys):
    with mounted(tmp_path, "size=1m") as folder:  # a real small disk: 1 MiB, the run folder needs about 5
        err = refused_before_computing(monkeypatch, capsys, ["run", "-r", "300", "--no-progress", "--out",
                                                             str(folder / "run")])
        assert err.startswith(f"error: {folder / 'run'}: the run folder needs about 6 MiB and {folder} has 1 MiB "
                              "free"), err
        assert list(folder.iterdir()) == []


def test_the_free_space_check_reads_the_target_disk(tmp_path, monkeypatch, capsys):
    import shutil

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=3 * 2**20))
    err = refused_before_computing(monkeypatch, capsys, ["run", "-r", "300", "--no-progress", "--out",
                                                         str(tmp_path / "run")])
    assert "the run folder needs about 6 MiB" in err and "has 3 MiB free" in err
    assert list(tmp_path.iterdir()) == []


def test_a_second_run_into_the_same_folder_refuses_while_the_first_writes(tmp_path, running, capsys):
    out = tmp_path / "run"
    first = running(["run", "--model", "template", "-r", "3000", "--out", str(out)])
    first.wait_for(BAR)
    assert main(["run", "--model", "template", "-r", "3", "--no-progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {out}: another fiscalsim run (pid {first.proc.pid}) is writing this folder now; wait "
                   "for it to finish or choose another --out")
    code, _ = first.ended(timeout=300)
    assert code == 0, first.stderr
    assert results.load(out).manifest["replications"] == 3000  # the first run, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no lock, no staging folder left


def test_staging_folders_of_killed_runs_are_removed_on_the_next_run(tmp_path):
    with results.reserve(tmp_path / "other") as writing:  # a live writer (this test) into tmp_path/other
        other = writing.staging
        stale = tmp_path / ".run.partial-abc123"  # an earlier run into tmp_path/run, killed while writing
        stale.mkdir()
        (stale / "rules.parquet").write_bytes(b"half")
        done = subprocess.run([sys.executable, "-m", "sim.cli", "run", "--model", "template", "-r", "2",
                               "--no-progress", "--out", str(tmp_path / "run")], cwd=ROOT, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert f"warning: removed {stale}, left by an earlier run that was interrupted" in done.stdout
        assert not stale.exists() and other.exists()
    assert results.load(tmp_path / "run").manifest["warnings"] == [
        f"removed {stale}, left by an earlier run that was interrupted"]


def test_a_run_too_big_for_this_machine_is_refused_with_its_figures(tmp_path, monkeypatch, capsys):
    err = refused_before_computing(monkeypatch, capsys, ["run", "-r", "1000000000", "--no-progress", "--out",
                                                         str(tmp_path / "run")])
    assert err.startswith("error: --replications 1,000,000,000: the run needs about ")
    assert "TiB of memory and this machine has" in err and "run at most about" in err
    assert list(tmp_path.iterdir()) == []


def test_a_long_run_says_how_long_and_how_big_before_it_starts(monkeypatch, capsys):
    monkeypatch.setattr(pipeline.sizing, "available_memory", lambda: 64 * 2**30)
    pipeline.prepare(settings=pipeline.Settings(replications=20_000), executor=executors.Serial(), progress=True)
    err = capsys.readouterr().err
    assert err.startswith("预计:用时约 ") and "1 个工作进程" in err and "内存约 17.1 GiB" in err
    pipeline.prepare(settings=pipeline.Settings(replications=30), executor=executors.Serial(), progress=True)
    assert capsys.readouterr().err == ""  # a short run starts without a word


# ----------------------------------------------------------------------------- Dask
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_killed_dask_worker_is_recovered_with_the_same_bytes():
    distributed = pytest.importorskip("dask.distributed")
    from sim import scenario

    policy, spec = scenario.apply(scenario.baseline())
    reference = montecarlo.run(policy, spec, 12, 5, n=60_000, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        victim = next(iter(client.run(os.getpid).values()))
        killed = []

        def kill_once(step):
            if not killed:
                killed.append(victim)
                os.kill(victim, signal.SIGKILL)  # its nanny starts another; its tasks run again elsewhere
        result = montecarlo.run(policy, spec, 12, 5, n=60_000, executor=executors.Dask(client), progress=kill_once)
    assert killed == [victim]
    pd.testing.assert_frame_equal(result.rules, reference.rules, check_exact=True)
    assert np.array_equal(result.budgets["claims_budget"], reference.budgets["claims_budget"])


def test_a_lost_dask_scheduler_ends_the_run_with_one_line(tmp_path, running):
    pytest.importorskip("dask.distributed")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", str(port), "--no-dashboard"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
    worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                               "--no-dashboard"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        out = tmp_path / "run"
        run = running(["run", "-r", "300", "--scheduler", address, "--out", str(out)])
        run.wait_for(BAR)
        time.sleep(2.0)
        os.killpg(scheduler.pid, signal.SIGKILL)
        code, seconds = run.ended(timeout=60)
        assert code == 4, run.stderr
        assert last_line(run.stderr).startswith(f"error: --scheduler {address}: lost the Dask scheduler during "
                                                "the run"), run.stderr
        assert "Traceback" not in run.stderr and run.stderr.count("error:") == 1, run.stderr
        nothing_loads(out)
    finally:
        for proc in (worker, scheduler):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
