"""A run never overwrites the record of another, finished run in its directory.

A run directory holds one run's record (`run.json`, `metrics.json`, `checkpoints/`, `metrics.csv`, `.hydra/`).
Only a training resume (`ckpt_path=last`, or a checkpoint file inside that directory) may continue in a
directory that holds a finished run, i.e. one whose `run.json` says `completed`, or that has
`checkpoints/last.ckpt` to resume (or a `metrics.json` without a readable `run.json`). Anything else
started there (a fresh `train.py`, `eval.py`, `train.py train=false`) fails with one `ConfigError` line
naming `hydra.run.dir` before it writes anything.

The check runs twice: as a Hydra callback before Hydra writes `.hydra/` and opens the job log (`RunDirGuard`,
`hydra.callbacks.run_dir_guard` in conf/train.yaml and conf/eval.yaml; run mode only, which includes every
job of the gpu_pool launcher), and in `akira.run` before `run.json` is written (any caller of `train()`
/ `evaluate()`). A fresh start over an unfinished record (failed, interrupted, config_error, or a run killed
while `running`, without `last.ckpt`) is allowed; that record is kept as `run.part<k>.json` (and
`metrics.part<k>.json`), as `metrics.csv` is kept as `metrics.part<k>.csv`.

A multirun of Hydra's own launchers (basic, submitit Slurm) writes each job's `.hydra/` before any job callback
runs, so there the callback checks every run dir already under `hydra.sweep.dir` before the sweep starts
(`on_multirun_start`; errors name `hydra.sweep.dir`).

Cheap to import (Hydra instantiates the callback before the task function runs): no torch here.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from akira.config.errors import ConfigError
from akira.runinfo import read_json_dict

SWEEP_DIR_ENV = "AKIRA_SWEEP_DIR"  # = akira.launch.sweep.SWEEP_DIR_ENV (set in every gpu_pool job)
RECORD_FILES = ("run.json", "metrics.json")


def finished_record(run_dir: str | os.PathLike) -> str | None:
    """What in `run_dir` a new run would overwrite (e.g. "a completed train run (run.json)"), or None when
    the directory holds no finished run (missing, empty, or an unfinished run without `last.ckpt`)."""
    d = Path(run_dir)
    info = read_json_dict(d / "run.json")
    status = info.get("status") if info else None
    task = f" {info['task_name']}" if info and isinstance(info.get("task_name"), str) else ""
    if status == "completed":
        return f"a completed{task} run (run.json)"
    if (d / "checkpoints" / "last.ckpt").exists():
        what = f"an unfinished{task} run ({status})" if status else "a run"
        return f"{what} with checkpoints/last.ckpt to resume"
    if info is None and (d / "metrics.json").exists():
        return "a run's metrics.json"
    return None


def is_resume(run_dir: str | os.PathLike, *, fit: bool, train: bool, ckpt_path: Any) -> bool:
    """A training run that continues the run of `run_dir`: `ckpt_path=last` with `checkpoints/last.ckpt`
    present, or a checkpoint file inside `run_dir` (a checkpoint of another run starts another run)."""
    if not (fit and train) or ckpt_path in (None, ""):
        return False
    d = Path(run_dir)
    path = d / "checkpoints" / "last.ckpt" if ckpt_path == "last" else Path(str(ckpt_path)).expanduser()
    return path.is_file() and path.resolve().is_relative_to(d.resolve())


def check_run_dir(run_dir: str | os.PathLike, *, fit: bool, train: bool, ckpt_path: Any,
                  sweep_dir: str | os.PathLike | None = None) -> bool:
    """Raise a `ConfigError` (key `hydra.run.dir`) when a run that is not a resume of the directory's run
    would overwrite the record of a finished run there. Returns whether the run is such a resume (`is_resume`).
    ``sweep_dir``: run_dir is a job dir of that sweep of Hydra's own launchers (`RunDirGuard.on_multirun_start`):
    the error names `hydra.sweep.dir`."""
    resume = is_resume(run_dir, fit=fit, train=train, ckpt_path=ckpt_path)
    what = finished_record(run_dir)
    if what is None or resume:
        return resume
    d = Path(run_dir)
    in_sweep = bool(os.environ.get(SWEEP_DIR_ENV))
    elsewhere = "choose another hydra.sweep.dir" if in_sweep or sweep_dir else "choose another hydra.run.dir"
    key, where = ("hydra.sweep.dir", f"{sweep_dir}: its job dir {d}") if sweep_dir else ("hydra.run.dir", str(d))
    ckpt = d / "checkpoints" / "last.ckpt"
    if fit and train:
        if ckpt.is_file():
            how = ("re-run the sweep with hydra.launcher.resume=true (or skip_completed=true), or "
                   f"{elsewhere}") if in_sweep else f"resume it with ckpt_path=last, or {elsewhere}"
        else:
            what = f"{what}, with no checkpoints/last.ckpt to resume"
            how = f"re-run the sweep with hydra.launcher.skip_completed=true, or {elsewhere}" if in_sweep else elsewhere
        raise ConfigError(key, f"{where} holds {what}; a new run there would overwrite its record: {how}")
    hint = f" and pass ckpt_path={ckpt}" if ckpt.is_file() else ""
    how = elsewhere if sweep_dir else f"leave out hydra.run.dir (the evaluation gets a run dir of its own){hint}"
    raise ConfigError(key, f"{where} holds {what}; evaluating there would overwrite its record: {how}")


def guard_run_dir(run_dir: str | os.PathLike, config: Any, *, fit: bool,
                  sweep_dir: str | os.PathLike | None = None) -> bool:
    """`check_run_dir` for a run of ``config`` (train.py / eval.py: its `train` and `ckpt_path`); returns whether
    the run resumes the directory's run."""
    from omegaconf import OmegaConf

    return check_run_dir(run_dir, fit=fit, train=bool(OmegaConf.select(config, "train", default=True)),
                         ckpt_path=OmegaConf.select(config, "ckpt_path", default=None), sweep_dir=sweep_dir)


def run_dirs_under(root: str | os.PathLike) -> list[Path]:
    """The directories under ``root`` (itself included, any depth) that hold a run's record: run.json,
    metrics.json or checkpoints/last.ckpt."""
    found = {p.parent for name in RECORD_FILES for p in Path(root).rglob(name)}
    found |= {p.parent.parent for p in Path(root).rglob("last.ckpt") if p.parent.name == "checkpoints"}
    return sorted(found)


def keep_earlier_record(run_dir: str | os.PathLike) -> list[Path]:
    """Before a fresh start in `run_dir`: move an earlier (unfinished) run's `run.json` / `metrics.json` aside
    as `run.part<k>.json` / `metrics.part<k>.json` (k = 1, 2, ...; one k for both). Returns the new paths."""
    d = Path(run_dir)
    present = [d / name for name in RECORD_FILES if (d / name).is_file()]
    if not present:
        return []
    k = 1
    while any((d / f"{Path(name).stem}.part{k}.json").exists() for name in RECORD_FILES):
        k += 1
    moved = []
    for path in present:
        dest = path.with_name(f"{path.stem}.part{k}.json")
        os.replace(path, dest)
        moved.append(dest)
    return moved


def is_rank_zero_env() -> bool:
    """Lightning's DDP launcher starts ranks > 0 (the same script, same run dir) with these variables set."""
    return all(int(os.environ.get(k, "0") or 0) == 0 for k in ("RANK", "LOCAL_RANK", "NODE_RANK"))


class RunDirGuard(Callback):
    """Hydra callback: `check_run_dir` on `hydra.run.dir` before Hydra writes `.hydra/` or the job log there
    (its error leaves Hydra as `akira.cli.StopBeforeRun`). `fit`: true for train.py, false for eval.py.

    In a multirun of Hydra's own launchers (basic, submitit), which write each job's `.hydra/` before any job
    callback runs, every run dir already under `hydra.sweep.dir` is checked once before the sweep starts
    (`on_multirun_start`), so a sweep into a directory of finished runs fails before it writes anything. The
    gpu_pool launcher runs each job as a run (`on_run_start`) and skips or resumes finished jobs itself."""

    def __init__(self, fit: bool = True) -> None:
        self.fit = bool(fit)

    def on_run_start(self, config, **kwargs: Any) -> None:
        from omegaconf import OmegaConf

        if not is_rank_zero_env():
            return
        run_dir = OmegaConf.select(config, "hydra.run.dir")
        if run_dir is None:
            return
        with _stop_before_run():
            guard_run_dir(os.path.abspath(str(run_dir)), config, fit=self.fit)

    def on_multirun_start(self, config, **kwargs: Any) -> None:
        from omegaconf import OmegaConf

        target = str(OmegaConf.select(config, "hydra.launcher._target_", default="") or "")
        sweep_dir = OmegaConf.select(config, "hydra.sweep.dir")
        if not is_rank_zero_env() or "akira_gpu_pool" in target or sweep_dir is None:
            return
        sweep = Path(os.path.abspath(str(sweep_dir)))
        with _stop_before_run():
            for run_dir in run_dirs_under(sweep) if sweep.is_dir() else []:
                guard_run_dir(run_dir, config, fit=self.fit, sweep_dir=sweep)


@contextmanager
def _stop_before_run():
    """A `ConfigError` of a Hydra callback leaves Hydra as `akira.cli.StopBeforeRun` (Hydra turns a callback's
    `Exception` into a warning)."""
    try:
        yield
    except ConfigError as exc:
        from akira.cli import StopBeforeRun

        raise StopBeforeRun(exc) from None
