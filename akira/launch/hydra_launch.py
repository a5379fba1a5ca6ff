"""The gpu_pool launcher's work (called by `hydra_plugins.akira_gpu_pool`): turn a batch of Hydra job
overrides into child commands `python <app script> <overrides> hydra.run.dir=<job dir> hydra.job.num=<n>`,
skip jobs finished in an earlier run of the same sweep, resume the others with `ckpt_path=last`, run them on
the GPU pool and return Hydra `JobReturn`s (a failed job's return value is one `RunFailed` summarising every
failure of the sweep so far).

A sweeper may call the launcher once per batch (`hydra.sweeper.max_batch_size`): `SweepHistory` keeps every
batch's results, and `end_sweep` (called by akira's `grid`/`study` sweepers after the last batch, which run every
batch whatever failed) prints the whole sweep's table and returns the `RunFailed` naming every failed job, which
the sweeper raises so `train.py -m` exits non-zero. Hydra's own BasicSweeper (`hydra/sweeper=basic`) raises a
failed job's `RunFailed` after its batch instead, and runs no later batch.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus, setup_globals
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict

from akira.config.errors import ConfigError
from akira.launch.gpu_monitor import GpuMonitor
from akira.launch.gpus import GpuPool, resolve_gpus
from akira.launch.runner import PLANNED, JobResult, JobSpec, SweepInterrupted, run_jobs
from akira.launch.sweep import (
    DRY_RUN_FILE,
    JOB_NUM_ENV,
    SWEEP_DIR_ENV,
    format_table,
    hydra_quote,
    is_completed,
    previous_status,
    read_run_json,
    write_state,
)
from akira.runinfo import read_json_dict

log = logging.getLogger(__name__)

# master hydra overrides that concern the sweep itself, not a job
_SWEEP_ONLY = ("hydra/launcher", "hydra/sweeper", "hydra.launcher", "hydra.sweeper", "hydra.sweep", "hydra.run",
               "hydra.mode", "hydra.job.num", "hydra.job.id")


@dataclass
class SweepHistory:
    """Every job the launcher ran (or planned, skipped) in this sweep, over all of the sweeper's batches."""

    results: dict[int, JobResult] = field(default_factory=dict)
    batches: int = 0
    log_name: str = "stdout.log"
    sweep_dir: Path | None = None

    def add(self, results: Sequence[JobResult], sweep_dir: Path, log_name: str) -> None:
        self.batches += 1
        self.sweep_dir, self.log_name = sweep_dir, log_name
        self.results.update({r.num: r for r in results})

    def all(self) -> list[JobResult]:
        return [self.results[k] for k in sorted(self.results)]

    def failure(self) -> Exception | None:
        """One `RunFailed` naming every failed job of the sweep so far (None if none failed)."""
        results = self.all()
        if all(r.ok for r in results):
            return None
        from akira.cli import RunFailed

        return RunFailed(_failure_summary(results, self.log_name))


def end_sweep(history: SweepHistory) -> Exception | None:
    """After a sweeper's last batch: the whole sweep's status table (when it ran in several batches, each of
    which printed its own) and the sweep's failure, if any."""
    if history.batches > 1:
        print(format_table(history.all(), history.sweep_dir), flush=True)
    return history.failure()


@dataclass
class LauncherOptions:
    gpus: Any = None
    gpus_per_job: int = 1
    max_parallel: int | None = None
    skip_completed: bool = True
    resume: bool = True
    log_name: str = "stdout.log"
    poll_interval_s: float = 0.2
    kill_grace_s: float = 30.0
    threads_per_job: int | None = None
    script: str | None = None
    dry_run: bool = False
    env: dict | None = None
    gpu_sample_interval_s: float = 5.0


def app_command(script: str | None, cwd: str) -> list[str]:
    """How to start the app again: `[python, <script>]` or `[python, -m, <module>]`."""
    if script:
        return [sys.executable, str(Path(cwd, script).resolve())]
    import __main__

    spec = getattr(__main__, "__spec__", None)
    if spec is not None and spec.name not in (None, "__main__"):
        return [sys.executable, "-m", spec.name.removesuffix(".__main__")]
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0.endswith(".py") and Path(cwd, argv0).is_file():
        return [sys.executable, str(Path(cwd, argv0).resolve())]
    raise ConfigError(None, "hydra.launcher.script: cannot tell which script started this sweep (sys.argv[0]="
                     f"{argv0!r}); set it to the app's .py file")


def _key(override: str) -> str:
    parsed = OverridesParser.create().parse_overrides([override])[0]
    return parsed.key_or_group


def passthrough_hydra_overrides(config: DictConfig) -> list[str]:
    """The master's Hydra overrides a job needs too (job logging, override_dirname, ...)."""
    out = []
    for item in OmegaConf.to_container(config.hydra.overrides.hydra, resolve=False):  # raw: may hold ${...}
        key = _key(str(item))
        if not any(key == p or key.startswith(p + ".") or key.startswith(p + "/") for p in _SWEEP_ONLY):
            out.append(str(item))
    return out


def job_dir_of(hydra_context, config: DictConfig, overrides: Sequence[str], num: int, sweep_dir: Path):
    """Compose the job's config (as Hydra's launchers do) and return `(job dir, job config)`."""
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config.hydra.job) as job:
        job.id = f"gpu_pool_{num}"
        job.num = num
    HydraConfig.instance().set_config(sweep_config)
    subdir = str(OmegaConf.select(sweep_config, "hydra.sweep.subdir"))
    return sweep_dir / subdir, sweep_config


NAME_MAX = 255  # bytes in one path component (Linux, macOS)


def _too_long(path: Path) -> bool:
    """Over the file-name limit, or already cut by the `akira_dirname` resolver (`...~<10 hex>`)."""
    return any(len(part.encode()) > NAME_MAX for part in path.parts) or bool(
        re.search(r"~[0-9a-f]{10}$", path.name))


def swept_keys(config: DictConfig, hydra_context=None) -> set[str]:
    """The keys the sweep varies: sweep overrides (`a=1,2`) on the command line or in `hydra.sweeper.params`."""
    loader = getattr(hydra_context, "config_loader", None)
    parser = OverridesParser.create(config_loader=loader)
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    items = [str(o) for o in OmegaConf.to_container(config.hydra.overrides.task, resolve=False)]
    items += [f"{k}={v}" for k, v in params.items()]
    keys = set()
    for item in items:
        try:
            override = parser.parse_overrides([item])[0]
        except HydraException:  # the sweeper parses (and rejects) them itself
            continue
        if override.is_sweep_override():
            keys.add(override.key_or_group)
    return keys


def short_subdir(num: int, overrides: Sequence[str], batch: Sequence[Sequence[str]],
                 swept: set[str] | frozenset[str] = frozenset()) -> str:
    """`<num>_<overrides of the swept keys, or that differ between the batch's jobs>` (hashed if still too long):
    the job dir name when `hydra.sweep.subdir` gives a name over the file system's limit (many command-line
    overrides). `swept` (`swept_keys`) keeps a job's name the same whatever batch it runs in
    (`hydra.sweeper.max_batch_size`), so a re-run with other batches still finds its earlier attempt."""
    import hashlib

    def values(job):
        return {_key(o): o for o in job}

    per_job = [values(job) for job in batch]
    mine = values(overrides)
    varying = sorted(o for k, o in mine.items() if k in swept or len({pj.get(k) for pj in per_job}) > 1)
    name = f"{num}_{','.join(varying)}" if varying else str(num)
    if len(name.encode()) > NAME_MAX:
        digest = hashlib.sha1(",".join(sorted(overrides)).encode()).hexdigest()[:12]
        name = f"{num}_{digest}"
    return name


# may differ between attempts of one job: the resume itself and how long to train (extending a run)
_RESUMABLE_CHANGES = ("ckpt_path", "trainer.max_steps", "trainer.max_epochs", "trainer.max_time")


def _same_job(job_dir: Path, overrides: Sequence[str]) -> None:
    """An earlier attempt in `job_dir` must be this job (same overrides, `_RESUMABLE_CHANGES` aside) before it
    is skipped as completed or resumed: a short job dir name (`short_subdir`) leaves out the overrides all jobs
    share, so a re-run with a changed shared setting would otherwise reuse another configuration's results or
    checkpoint."""
    info = read_run_json(job_dir)
    if not info or info.get("overrides") is None:
        return
    theirs = sorted(o for o in info["overrides"] if _key(o) not in _RESUMABLE_CHANGES)
    mine = sorted(o for o in overrides if _key(o) not in _RESUMABLE_CHANGES)
    if theirs != mine:
        raise ValueError(f"gpu_pool: {job_dir} holds a run with other overrides ({', '.join(theirs)}) than this job "
                         f"({', '.join(mine)}); use a new hydra.sweep.dir, or move that directory away")


def _failure_summary(results: Sequence[JobResult], log_name: str) -> str:
    failed = [r for r in results if not r.ok]
    parts = [f"#{r.num} {Path(r.job_dir).name} ({r.status}" + (f", exit {r.returncode}" if r.returncode is not None
                                                               else "") + ")" for r in failed]
    first = failed[0]
    why = f": {first.error}" if first.error else ""
    return (f"{len(failed)} of {len(results)} sweep jobs failed: {', '.join(parts)}; first{why} "
            f"(log: {Path(first.job_dir) / log_name})")


def launch(opts: LauncherOptions, hydra_context, config: DictConfig, job_overrides: Sequence[Sequence[str]],
           initial_job_idx: int, history: SweepHistory | None = None) -> list[JobReturn]:
    """Run one batch of the sweep; `history` collects the batches of one sweep (a fresh one: this batch only)."""
    history = SweepHistory() if history is None else history
    setup_globals()
    master_hydra = HydraConfig.instance().cfg
    sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    cwd = str(config.hydra.runtime.cwd or os.getcwd())
    base_cmd = app_command(opts.script, cwd)
    hydra_passthrough = passthrough_hydra_overrides(config)

    specs, job_cfgs, swept = [], {}, None
    try:
        for i, overrides in enumerate(job_overrides):
            num = initial_job_idx + i
            job_dir, job_cfg = job_dir_of(hydra_context, config, overrides, num, sweep_dir)
            if _too_long(job_dir):
                swept = swept_keys(config, hydra_context) if swept is None else swept
                short = sweep_dir / short_subdir(num, overrides, job_overrides, swept)
                log.warning(f"gpu_pool: job {num}: directory name over {NAME_MAX} bytes; using {short.name}")
                job_dir = short
            job_cfgs[num] = job_cfg
            prev = previous_status(job_dir)
            if prev is not None:
                _same_job(job_dir, overrides)
            skip = opts.skip_completed and is_completed(job_dir)
            resume = opts.resume and prev is not None and not skip
            task = list(overrides)
            if resume and not any(_key(o) == "ckpt_path" for o in task):
                task.append("ckpt_path=last")
            command = [*base_cmd, *task, *hydra_passthrough, f"hydra.run.dir={hydra_quote(str(job_dir))}",
                       f"hydra.job.num={num}"]
            specs.append(JobSpec(num=num, overrides=list(overrides), job_dir=job_dir, command=command,
                                 resume=resume, skip=skip, env={JOB_NUM_ENV: str(num)}))
    finally:
        if master_hydra is not None:
            HydraConfig.instance().cfg = master_hydra
    seen: dict[Path, int] = {}
    for s in specs:
        if s.job_dir in seen:
            raise ValueError(f"hydra.sweep.subdir: jobs #{seen[s.job_dir]} and #{s.num} map to the same directory "
                             f"{s.job_dir}; include ${{hydra.job.num}} or the swept keys")
        seen[s.job_dir] = s.num

    pool = GpuPool(resolve_gpus(opts.gpus), opts.gpus_per_job)
    monitor = GpuMonitor(sweep_dir, opts.gpu_sample_interval_s)  # validates the interval on any pool, dry runs too
    meta = {"sweep_dir": str(sweep_dir), "pool": pool.ids, "gpus_per_job": opts.gpus_per_job,
            "max_parallel": opts.max_parallel}
    where = f"GPUs {','.join(pool.ids)} ({opts.gpus_per_job} per job)" if pool.has_gpus else "CPU (no GPUs)"
    log.info(f"gpu_pool: {len(specs)} job(s) on {where}; sweep dir {sweep_dir}")

    if opts.dry_run:
        results = [JobResult(num=s.num, overrides=s.overrides, job_dir=str(s.job_dir), command=s.command,
                             status="skipped" if s.skip else PLANNED, resumed=s.resume) for s in specs]
        write_state(sweep_dir, results, {**meta, "dry_run": True}, name=DRY_RUN_FILE)
        history.add(results, sweep_dir, opts.log_name)
        print(format_table(results, sweep_dir), flush=True)
        for s in specs:
            print(f"  #{s.num}: {' '.join(s.overrides)}", flush=True)
        return [_job_return(r, job_cfgs[r.num], None) for r in results]

    env = {**os.environ, SWEEP_DIR_ENV: str(sweep_dir), **{str(k): str(v) for k, v in (opts.env or {}).items()}}

    def on_update(results):
        write_state(sweep_dir, results, meta)

    try:
        with monitor if pool.has_gpus else contextlib.nullcontext():
            results = run_jobs(specs, pool, opts.max_parallel, env=env, cwd=cwd, log_name=opts.log_name,
                               poll_s=opts.poll_interval_s, kill_grace_s=opts.kill_grace_s,
                               threads_per_job=opts.threads_per_job, on_update=on_update)
    except SweepInterrupted as exc:
        write_state(sweep_dir, exc.results, meta)
        print(format_table(exc.results, sweep_dir), file=sys.stderr, flush=True)
        raise
    print(format_table(results, sweep_dir), flush=True)
    history.add(results, sweep_dir, opts.log_name)
    failure = history.failure() if any(not r.ok for r in results) else None
    return [_job_return(r, job_cfgs[r.num], failure) for r in results]


def _job_return(result: JobResult, job_cfg: DictConfig, failure: Exception | None) -> JobReturn:
    cfg = OmegaConf.masked_copy(job_cfg, [k for k in job_cfg if k != "hydra"])
    ret = JobReturn(overrides=list(result.overrides), cfg=cfg, hydra_cfg=job_cfg, working_dir=result.job_dir,
                    task_name=str(job_cfg.get("task_name", "")))
    if result.ok:
        ret.status = JobStatus.COMPLETED
        ret.return_value = read_json_dict(Path(result.job_dir) / "metrics.json")
    else:
        ret.status = JobStatus.FAILED
        ret.return_value = failure
    return ret
