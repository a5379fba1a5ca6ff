"""A run never overwrites the record of a finished run (akira/rundir.py): a fresh train.py, eval.py or a
sweep job without resume pointed at a finished run's directory fails with one line and changes no file there;
a resume continues; a fresh start over an unfinished record keeps that record as run.part<k>.json."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from akira.cli import ROOT
from akira.config import ConfigError
from akira.run import evaluate, train
from akira.rundir import RunDirGuard, check_run_dir, finished_record, keep_earlier_record, run_dirs_under
from tests.conftest import TINY, compose_config

PY = sys.executable
TRAIN = ["model=mlp2d", "trainer.max_steps=2", "callbacks.frame_panels=null", "test=false"]


def _run(run_dir: Path, overrides: list[str], fn=train, config_name: str = "train"):
    tiny = TINY if config_name == "train" else [o for o in TINY if not o.startswith("callbacks.")]
    return fn(compose_config(tiny + overrides, config_name=config_name, run_dir=run_dir))


def _snapshot(run_dir: Path, ignore: tuple[str, ...] = ()) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name not in ignore}


def _cli(script: str, args: list[str], env: dict | None = None, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([PY, str(ROOT / script), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A completed tiny training run (run.json, metrics.json, metrics.csv, checkpoints/) plus a stand-in for
    the .hydra/ that train.py writes."""
    run_dir = tmp_path_factory.mktemp("finished")
    _run(run_dir, TRAIN)
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "overrides.yaml").write_text("- model=mlp2d\n")
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
    assert (run_dir / "metrics.json").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    return run_dir


@pytest.mark.slow   # ~25-30 s of subprocess runs on 2 cores
def test_fresh_train_and_eval_into_a_finished_run_fail_before_writing_anything(finished):
    before = _snapshot(finished)
    # train.py: refused by the Hydra callback, before Hydra writes .hydra/ or train.log
    fresh = _cli("train.py", [*TINY, *TRAIN, f"hydra.run.dir={finished}"])
    assert fresh.returncode == 2, fresh.stderr[-2000:]
    last = fresh.stderr.strip().splitlines()[-1]
    assert last.startswith(f"akira: config error: hydra.run.dir: {finished} holds a completed train run"), last
    assert "ckpt_path=last" in last and "another hydra.run.dir" in last
    # eval.py (its old hint was exactly this: ckpt_path=last inside the run's dir)
    tiny_eval = [o for o in TINY if not o.startswith("callbacks.")]
    ev = _cli("eval.py", [*tiny_eval, "model=mlp2d", "ckpt_path=last", f"hydra.run.dir={finished}"])
    assert ev.returncode == 2, ev.stderr[-2000:]
    last = ev.stderr.strip().splitlines()[-1]
    assert last.startswith(f"akira: config error: hydra.run.dir: {finished} holds a completed train run"), last
    assert f"ckpt_path={finished / 'checkpoints' / 'last.ckpt'}" in last
    assert _snapshot(finished) == before
    # the same through the Python API (akira.run.train / evaluate)
    with pytest.raises(ConfigError, match="hydra.run.dir: .* holds a completed train run"):
        _run(finished, TRAIN)
    with pytest.raises(ConfigError, match="hydra.run.dir: .*evaluating there would overwrite"):
        _run(finished, ["model=mlp2d", f"ckpt_path={finished / 'checkpoints' / 'last.ckpt'}"], fn=evaluate,
             config_name="eval")
    with pytest.raises(ConfigError, match="hydra.run.dir"):   # train.py train=false evaluates too
        _run(finished, [*TRAIN, "train=false", "ckpt_path=last"])
    assert _snapshot(finished) == before


def test_a_checkpoint_of_another_run_does_not_make_a_resume(finished, tmp_path):
    other = tmp_path / "other.ckpt"
    other.write_bytes((finished / "checkpoints" / "last.ckpt").read_bytes())
    with pytest.raises(ConfigError, match="hydra.run.dir"):
        check_run_dir(finished, fit=True, train=True, ckpt_path=str(other))
    for ckpt in ("last", str(finished / "checkpoints" / "last.ckpt")):   # its own checkpoints: a resume
        check_run_dir(finished, fit=True, train=True, ckpt_path=ckpt)


def test_what_counts_as_a_finished_run(tmp_path):
    assert finished_record(tmp_path / "missing") is None and finished_record(tmp_path) is None
    (tmp_path / "run.json").write_text(json.dumps({"status": "interrupted", "task_name": "train"}))
    assert finished_record(tmp_path) is None          # unfinished, nothing to resume: a fresh start is fine
    check_run_dir(tmp_path, fit=True, train=True, ckpt_path=None)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert "checkpoints/last.ckpt" in finished_record(tmp_path)
    with pytest.raises(ConfigError, match="interrupted.*resume it with ckpt_path=last"):
        check_run_dir(tmp_path, fit=True, train=True, ckpt_path=None)
    with pytest.raises(ConfigError, match="evaluating there"):
        check_run_dir(tmp_path, fit=False, train=False, ckpt_path="last")
    parameter_free = tmp_path / "copy_last"   # completed, no checkpoint: ckpt_path=last cannot resume it
    parameter_free.mkdir()
    (parameter_free / "run.json").write_text(json.dumps({"status": "completed", "task_name": "train"}))
    with pytest.raises(ConfigError, match="no checkpoints/last.ckpt to resume"):
        check_run_dir(parameter_free, fit=True, train=True, ckpt_path="last")
    orphan = tmp_path / "orphan"               # metrics.json without a run.json: a record all the same
    orphan.mkdir()
    (orphan / "metrics.json").write_text("{}")
    assert finished_record(orphan) == "a run's metrics.json"


def test_a_fresh_start_over_an_unfinished_run_keeps_its_record(tmp_path):
    earlier = json.dumps({"status": "failed", "task_name": "train", "error": "RuntimeError: boom"})
    (tmp_path / "run.json").write_text(earlier)
    metrics = _run(tmp_path, ["model=copy_last"])
    assert "test/mse" in metrics
    assert (tmp_path / "run.part1.json").read_text() == earlier
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "completed"
    # a later fresh start over an unfinished record gets the next number (run.json and metrics.json share k)
    (tmp_path / "run.json").write_text(earlier)
    assert keep_earlier_record(tmp_path) == [tmp_path / "run.part2.json", tmp_path / "metrics.part2.json"]
    assert not (tmp_path / "run.json").exists() and not (tmp_path / "metrics.json").exists()


@pytest.mark.slow   # ~25-30 s of subprocess runs on 2 cores
def test_sweep_without_skip_or_resume_fails_the_finished_job_and_keeps_its_record(tmp_path):
    """gpu_pool with skip_completed=false resume=false re-runs a completed job fresh: the job fails with the
    error line (the sweep summary quotes it) and its record is unchanged (stdout.log is appended to)."""
    sweep = tmp_path / "sweep"
    job = [o.replace("=false", "=False") for o in TINY + TRAIN   # spelled as the sweeper passes them on
           if not o.startswith(("callbacks.frame_panels.", "trainer.max_steps=4"))]
    job_dir = sweep / "0"   # the sweep's job 0 (hydra.sweep.subdir below), run in-process (faster)
    train(compose_config(job, run_dir=job_dir))
    before = _snapshot(job_dir)
    assert json.loads((job_dir / "run.json").read_text())["status"] == "completed"
    again = _cli("train.py", ["-m", *job, "hydra/launcher=gpu_pool", "hydra.launcher.gpus=[]",
                              f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=${hydra.job.num}",
                              "hydra.launcher.skip_completed=false", "hydra.launcher.resume=false"],
                 env={"PYTHONUNBUFFERED": "1"}, timeout=300)
    assert again.returncode == 1, again.stderr[-3000:]
    last = again.stderr.strip().splitlines()[-1]
    assert "1 of 1 sweep jobs failed" in last and "hydra.run.dir" in last and "holds a completed train run" in last
    assert _snapshot(job_dir, ignore=("stdout.log",)) == before
    assert "hydra.launcher.resume=true" in (job_dir / "stdout.log").read_text()


def test_multirun_of_hydras_launchers_into_finished_runs_is_refused_before_it_starts(finished, tmp_path):
    """Hydra's basic/submitit launchers write each job's .hydra/ before any job callback runs, so the guard checks
    every run dir under hydra.sweep.dir at the multirun's start: a finished job dir (at any depth) refuses the
    sweep naming hydra.sweep.dir; resuming (ckpt_path=last), an unfinished job dir, or the gpu_pool launcher
    (which checks, skips or resumes each job itself) pass."""
    from akira.cli import StopBeforeRun

    sweep = tmp_path / "sweep"
    shutil.copytree(finished, sweep / "model=mlp2d" / "0")
    unfinished = sweep / "1"
    unfinished.mkdir()
    (unfinished / "run.json").write_text(json.dumps({"status": "failed"}))
    assert run_dirs_under(sweep) == [sweep / "1", sweep / "model=mlp2d" / "0"]

    def start(*overrides):
        cfg = compose_config([*TINY, *TRAIN, f"hydra.sweep.dir={sweep}", *overrides], run_dir=tmp_path / "unused")
        RunDirGuard(fit=True).on_multirun_start(config=cfg)
    with pytest.raises(StopBeforeRun) as stop:
        start()
    assert stop.value.error.key == "hydra.sweep.dir"
    assert str(stop.value.error).startswith(f"hydra.sweep.dir: {sweep}: its job dir {sweep / 'model=mlp2d' / '0'} "
                                            "holds a completed train run")
    assert "ckpt_path=last" in str(stop.value.error)
    start("ckpt_path=last")                    # every finished job resumes
    start("hydra/launcher=gpu_pool")
    shutil.rmtree(sweep / "model=mlp2d")
    start()                                    # only an unfinished run: a fresh job may start over it


def test_basic_launcher_sweep_into_a_finished_run_writes_nothing(finished, tmp_path):
    """End to end: `train.py -m` with Hydra's basic launcher into a sweep dir holding a finished run exits 2 with
    one line, before Hydra writes multirun.yaml or any job's .hydra/ (before: the job's .hydra/ was rewritten
    and only then the job refused)."""
    sweep = tmp_path / "sweep"
    shutil.copytree(finished, sweep / "0")
    before = _snapshot(sweep)
    out = _cli("train.py", ["-m", *TINY, *TRAIN, "hydra/launcher=basic", f"hydra.sweep.dir={sweep}",
                            "hydra.sweep.subdir=${hydra.job.num}"])
    assert out.returncode == 2, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"akira: config error: hydra.sweep.dir: {sweep}: its job dir {sweep / '0'} holds"), last
    assert _snapshot(sweep) == before
