"""Sweep-directory helpers shared by the launcher, the loggers and the report: a sweep's name, a job's
previous state (from its `run.json`), the launcher's state file and the final status table."""
from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from akira.launch.runner import JobResult
from akira.runinfo import read_json_dict

STATE_FILE = "gpu_pool.json"
DRY_RUN_FILE = "gpu_pool.dry_run.json"  # the plan of `hydra.launcher.dry_run=true` (never touches STATE_FILE)
SWEEP_DIR_ENV = "AKIRA_SWEEP_DIR"  # set by gpu_pool in every child: the sweep the job belongs to
JOB_NUM_ENV = "AKIRA_JOB_NUM"


def sweep_name(sweep_dir: str | os.PathLike) -> str:
    """A short stable name: `<task>/<time>` for this framework's `<log_dir>/<task>/multiruns/<time>`,
    else the directory's own name."""
    path = Path(sweep_dir).resolve()
    if path.parent.name == "multiruns" and path.parent.parent.name:
        return f"{path.parent.parent.name}/{path.name}"
    return path.name


def read_run_json(job_dir: str | os.PathLike) -> dict | None:
    return read_json_dict(Path(job_dir) / "run.json")


def previous_status(job_dir: str | os.PathLike) -> str | None:
    """`run.json`'s status of an earlier attempt (completed, failed, interrupted, running, ...), or None."""
    info = read_run_json(job_dir)
    if info is None:
        return "started" if (Path(job_dir) / "checkpoints" / "last.ckpt").exists() else None
    return str(info.get("status"))


def is_completed(job_dir: str | os.PathLike) -> bool:
    info = read_run_json(job_dir)
    return bool(info) and info.get("status") == "completed" and info.get("exit_code") in (0, None)


def hydra_quote(value: str) -> str:
    """Quote a value for a Hydra command-line override (paths hold `=` and `,` from override_dirname)."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"path {value!r}: cannot hold both ' and \" (rename the sweep directory)")


def write_state(sweep_dir: str | os.PathLike, results: Sequence[JobResult], meta: dict,
                name: str = STATE_FILE) -> Path:
    """Merge `results` (by job number) into `<sweep dir>/gpu_pool.json`; skipped jobs keep their last run."""
    from akira.runinfo import write_json_atomic

    path = Path(sweep_dir) / name
    try:
        old = {int(j["num"]): j for j in json.loads(path.read_text()).get("jobs", [])}
    except (OSError, ValueError, KeyError, TypeError):
        old = {}
    jobs = dict(old)
    for r in results:
        record = r.to_json()
        prev = old.get(r.num)
        if r.status == "skipped" and prev is not None:
            record["previous"] = (prev.get("previous") if prev.get("status") == "skipped" else
                                  {k: prev.get(k) for k in ("status", "gpus", "start", "end", "returncode")})
        record["seconds"] = r.seconds
        jobs[r.num] = record
    state = {**meta, "updated": time.time(), "jobs": [jobs[k] for k in sorted(jobs)]}
    write_json_atomic(path, state)
    return path


def format_table(results: Sequence[JobResult], sweep_dir: str | os.PathLike | None = None) -> str:
    """A plain-text status table of every job, with a one-line summary on top."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    head = f"gpu_pool: {len(results)} job(s): {summary}" + (f" | sweep dir: {sweep_dir}" if sweep_dir else "")
    rows = [("#", "status", "exit", "gpus", "time", "job")]
    for r in results:
        seconds = r.seconds
        rows.append((str(r.num), r.status + (" (resumed)" if r.resumed and r.status != "skipped" else ""),
                     "" if r.returncode is None else str(r.returncode), r.gpus if r.gpus else "-" if r.gpus == "" else "",
                     "" if seconds is None else f"{seconds:.1f}s", Path(r.job_dir).name))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1] for row in rows]
    errors = [f"  #{r.num}: {r.error}" for r in results if r.error and not r.ok]
    return "\n".join([head, *lines, *errors])
