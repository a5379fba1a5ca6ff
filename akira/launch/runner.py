"""Run jobs as child processes on a GPU pool: each job gets a fresh interpreter in its own process group,
`CUDA_VISIBLE_DEVICES` set to the ids it leased (`""` on a CPU pool), and its stdout/stderr in a log file
in its job directory. Ids go back to the pool the moment a job ends, so the next job starts at once.

SIGINT/SIGTERM received while jobs run are forwarded to every child's process group (SIGKILL after a grace
period or on a second signal); `run_jobs` then raises `SweepInterrupted` with every job's result.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from akira.config.errors import ConfigError
from akira.launch.gpus import GpuPool

# terminal states of a job
COMPLETED, FAILED, SKIPPED, INTERRUPTED, NOT_STARTED, PLANNED = (
    "completed", "failed", "skipped", "interrupted", "not_started", "planned")


@dataclass
class JobSpec:
    """One job: its number, sweep overrides, directory and the command that runs it."""

    num: int
    overrides: list[str]
    job_dir: Path
    command: list[str]
    resume: bool = False  # a previous attempt exists: the command resumes from its last.ckpt
    skip: bool = False  # finished in a previous attempt: not run again
    env: dict[str, str] = field(default_factory=dict)  # extra environment of this job


@dataclass
class JobResult:
    num: int
    overrides: list[str]
    job_dir: str
    status: str = NOT_STARTED
    returncode: int | None = None
    gpus: str | None = None  # CUDA_VISIBLE_DEVICES given to the job
    start: float | None = None  # epoch seconds
    end: float | None = None
    pid: int | None = None
    log: str | None = None
    resumed: bool = False
    error: str | None = None  # a failed job's last error line from its log
    command: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float | None:
        return None if self.start is None or self.end is None else self.end - self.start

    @property
    def ok(self) -> bool:
        return self.status in (COMPLETED, SKIPPED, PLANNED)

    def to_json(self) -> dict:
        return asdict(self)


class SweepInterrupted(KeyboardInterrupt):
    """The sweep was stopped by a signal; `results` holds every job's state after the children ended."""

    def __init__(self, signum: int, results: list[JobResult]):
        super().__init__(f"sweep interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.results = results


@dataclass
class _Running:
    spec: JobSpec
    result: JobResult
    proc: subprocess.Popen
    gpus: list[str]
    log_file: object


def _child_env(base: Mapping[str, str], extra: Mapping[str, str], gpus: list[str], threads: int | None
               ) -> dict[str, str]:
    env = {**base, **extra}
    env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    env["PYTHONUNBUFFERED"] = "1"
    if threads is not None:
        for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(key, str(threads))
    return env


def last_error_line(log_path: str | os.PathLike, tail_bytes: int = 16384) -> str | None:
    """The last `akira: ...error...` line of a log (else its last non-empty line)."""
    try:
        with open(log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - tail_bytes))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return None
    flagged = [ln for ln in lines if ln.startswith("akira:") or "Error" in ln.split(":", 1)[0]]
    pick = flagged[-1] if flagged else (lines[-1] if lines else None)
    return pick[:300] if pick else None


def _die_with_parent_fn():
    """A `preexec_fn` that makes Linux send SIGTERM to the child if the launcher dies (even by SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM))

    return preexec


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the child leads its own session: pgid == pid
    except (ProcessLookupError, PermissionError):
        pass


def run_jobs(jobs: Sequence[JobSpec], pool: GpuPool, max_parallel: int | None = None, *,
             env: Mapping[str, str] | None = None, cwd: str | os.PathLike | None = None,
             log_name: str = "stdout.log", poll_s: float = 0.2, kill_grace_s: float = 30.0,
             threads_per_job: int | None = None,
             on_update: Callable[[list[JobResult]], None] | None = None) -> list[JobResult]:
    """Run `jobs` (in order) as child processes, at most `max_parallel` at once (None: as many as the pool's
    GPUs allow, 1 on a CPU pool); returns one `JobResult` per job, in the order given."""
    if max_parallel is not None and (not isinstance(max_parallel, int) or max_parallel < 1):
        raise ConfigError(None, f"hydra.launcher.max_parallel: must be null or an integer >= 1 (got {max_parallel!r})")
    limit = max_parallel if max_parallel is not None else (pool.capacity or 1)
    if pool.capacity is not None:
        limit = min(limit, pool.capacity)
    if threads_per_job is None and not pool.has_gpus and limit > 1:
        threads_per_job = max(1, (os.cpu_count() or 1) // limit)
    base_env = dict(os.environ if env is None else env)

    results = {j.num: JobResult(num=j.num, overrides=list(j.overrides), job_dir=str(j.job_dir), command=list(j.command),
                                resumed=j.resume) for j in jobs}
    ordered = [results[j.num] for j in jobs]
    for job in jobs:
        if job.skip:
            results[job.num].status = SKIPPED
    pending = deque(j for j in jobs if not j.skip)
    running: list[_Running] = []
    received: list[int] = []
    signaled: set[int] = set()
    preexec = _die_with_parent_fn()

    def notify() -> None:
        if on_update is not None:
            on_update(ordered)

    def on_signal(signum, frame) -> None:
        received.append(signum)
        for r in list(running):  # forward at once; a second signal escalates to SIGKILL
            _signal_group(r.proc, signum if len(received) == 1 else signal.SIGKILL)
            signaled.add(r.proc.pid)

    in_main = threading.current_thread() is threading.main_thread()
    previous = {}
    if in_main:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)

    def start(spec: JobSpec, gpus: list[str]) -> None:
        job_dir = Path(spec.job_dir)
        job_dir.mkdir(parents=True, exist_ok=True)
        log_path = job_dir / log_name
        log_file = open(log_path, "ab")  # noqa: SIM115 - closed when the job ends
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        log_file.write(f"=== gpu_pool {stamp} job {spec.num} CUDA_VISIBLE_DEVICES={','.join(gpus)!r}"
                       f"{' (resume)' if spec.resume else ''}: {' '.join(spec.command)}\n".encode())
        log_file.flush()
        result = results[spec.num]
        result.start, result.gpus, result.log = time.time(), ",".join(gpus), str(log_path)
        try:
            proc = subprocess.Popen(spec.command, cwd=cwd, env=_child_env(base_env, spec.env, gpus, threads_per_job),
                                    stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=preexec)
        except OSError as exc:
            log_file.write(f"gpu_pool: cannot start the job: {exc}\n".encode())
            log_file.close()
            pool.release(gpus)
            result.status, result.returncode, result.end = FAILED, None, time.time()
            return
        result.pid, result.status = proc.pid, "running"
        running.append(_Running(spec, result, proc, gpus, log_file))

    def reap(r: _Running, status: str | None = None) -> None:
        rc = r.proc.wait()
        r.result.end, r.result.returncode = time.time(), rc
        r.result.status = status or (COMPLETED if rc == 0 else INTERRUPTED if received else FAILED)
        r.log_file.close()
        if r.result.status != COMPLETED:
            r.result.error = last_error_line(r.result.log)
        pool.release(r.gpus)
        running.remove(r)

    try:
        notify()
        while (pending or running) and not received:
            started = False
            while pending and len(running) < limit and not received:
                gpus = pool.lease()
                if gpus is None:
                    break
                start(pending.popleft(), gpus)
                started = True
            if started:
                notify()
            time.sleep(poll_s)
            done = [r for r in running if r.proc.poll() is not None]
            for r in done:
                reap(r)
            if done:
                notify()
        if received:
            for r in running:  # started while the signal arrived
                if r.proc.pid not in signaled:
                    _signal_group(r.proc, received[0])
            deadline = time.monotonic() + kill_grace_s
            while running and time.monotonic() < deadline:
                for r in [r for r in running if r.proc.poll() is not None]:
                    reap(r, INTERRUPTED)
                time.sleep(min(poll_s, 0.1))
            for r in list(running):
                _signal_group(r.proc, signal.SIGKILL)
                reap(r, INTERRUPTED)
            notify()
    finally:
        for r in list(running):  # an unexpected error in the loop: leave no orphans
            _signal_group(r.proc, signal.SIGKILL)
            reap(r, INTERRUPTED)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise SweepInterrupted(received[0], ordered)
    return ordered
