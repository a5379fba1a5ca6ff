"""The gpu_pool launcher (pool leasing, scheduling, signals, skip/resume, failures), the study sweeper behind
experiment=sweep_ablations, and the SLURM (submitit) launcher configs."""
from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from akira.cli import ROOT
from akira.launch.gpus import GpuPool, parse_visible_devices, probe_gpus, resolve_gpus
from akira.launch.runner import JobSpec, run_jobs
from akira.launch.sweep import format_table, hydra_quote, sweep_name
from tests.conftest import TINY, compose_config

PY = sys.executable
ARMS = ["lm_baseline", "ablation_band_only", "ablation_difflr_only", "ablation_no_wormhole", "ablation_full"]
# TINY without panels, 2 steps: a job is mostly interpreter start-up
JOB = [o for o in TINY if not o.startswith(("callbacks.frame_panels", "trainer.max_steps"))] + [
    "callbacks.frame_panels=null", "trainer.max_steps=2", "model=mlp2d"]


def _overlap(a, b) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


# ------------------------------------------------------------------------------------------ the pool
def test_pool_leases_lowest_free_ids_and_takes_them_back():
    pool = GpuPool(["0", "1", "2", "3"], per_job=2)
    assert pool.capacity == 2
    a, b = pool.lease(), pool.lease()
    assert (a, b) == (["0", "1"], ["2", "3"]) and pool.lease() is None
    pool.release(b)
    assert pool.lease() == ["2", "3"]
    pool.release(a)
    assert pool.free == ["0", "1"]
    with pytest.raises(ValueError, match="not a leased id"):
        pool.release(["0"])
    cpu = GpuPool([], per_job=1)
    assert cpu.capacity is None and cpu.lease() == [] and cpu.lease() == []


@pytest.mark.parametrize("ids,per_job,match", [(["0"], 2, "gpus_per_job"), (["0", "1"], 0, "gpus_per_job")])
def test_pool_rejects_bad_sizes(ids, per_job, match):
    with pytest.raises(ValueError, match=match):
        GpuPool(ids, per_job)


def test_gpu_ids_from_config_and_environment():
    assert parse_visible_devices("0, 1,-1,2") == ["0", "1"] and parse_visible_devices("") == []
    assert resolve_gpus([0, 1]) == ["0", "1"] and resolve_gpus("2,3") == ["2", "3"] and resolve_gpus([]) == []
    assert probe_gpus({"CUDA_VISIBLE_DEVICES": "4,5"}) == ["4", "5"]  # no probing when the env says
    assert probe_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    with pytest.raises(ValueError, match="hydra.launcher.gpus"):
        resolve_gpus([0, 0])
    with pytest.raises(ValueError, match="hydra.launcher.gpus"):
        resolve_gpus(2)


def test_small_helpers():
    assert sweep_name("/x/outputs/sweep_ablations/multiruns/2025-01-01_00-00-00") == "sweep_ablations/2025-01-01_00-00-00"
    assert sweep_name("/x/my_sweep") == "my_sweep"
    assert hydra_quote("/a/0_seed=1,b=2") == "'/a/0_seed=1,b=2'" and hydra_quote("it's") == '"it\'s"'


# ------------------------------------------------------------------------------------------ scheduling (fake jobs)
CHILD = textwrap.dedent("""
    import json, os, sys, time
    out = sys.argv[1]
    t0 = time.time()
    time.sleep(float(sys.argv[2]))
    json.dump({"gpus": os.environ["CUDA_VISIBLE_DEVICES"], "start": t0, "end": time.time(),
               "threads": os.environ.get("OMP_NUM_THREADS"), "job": os.environ.get("AKIRA_JOB_NUM")}, open(out, "w"))
    sys.exit(int(sys.argv[3]))
""")


def _fake_jobs(tmp_path: Path, n: int, seconds: float = 0.4, fail: tuple[int, ...] = ()) -> list[JobSpec]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return [JobSpec(num=i, overrides=[f"i={i}"], job_dir=tmp_path / f"job{i}",
                    command=[PY, str(script), str(tmp_path / f"seen{i}.json"), str(seconds), "3" if i in fail else "0"],
                    env={"AKIRA_JOB_NUM": str(i)}) for i in range(n)]


def test_jobs_on_a_gpu_pool_never_share_an_id(tmp_path):
    jobs = _fake_jobs(tmp_path, 6, fail=(2,))
    pool = GpuPool(["a", "b", "c", "d"], per_job=2)
    results = run_jobs(jobs, pool, poll_s=0.02)
    assert [r.status for r in results] == ["completed", "completed", "failed", "completed", "completed", "completed"]
    assert results[2].returncode == 3 and pool.free == ["a", "b", "c", "d"]
    seen = [json.loads((tmp_path / f"seen{i}.json").read_text()) for i in range(6)]
    for r, s in zip(results, seen):
        assert s["gpus"] == r.gpus and s["gpus"] in ("a,b", "c,d") and s["job"] == str(r.num)
        assert (Path(r.job_dir) / "stdout.log").read_text().startswith("=== gpu_pool ")
    pairs = list(itertools.combinations(seen, 2))
    assert all(a["gpus"] != b["gpus"] for a, b in pairs if _overlap(a, b))
    assert any(_overlap(a, b) for a, b in pairs), "the pool never ran two jobs at once"
    times = sorted(t for s in seen for t in ((s["start"], 1), (s["end"], -1)))
    assert max(itertools.accumulate(d for _, d in times)) == 2  # never more jobs than the pool allows
    assert "1 failed" in format_table(results) and "5 completed" in format_table(results)


def test_cpu_pool_runs_max_parallel_jobs_without_gpus(tmp_path):
    results = run_jobs(_fake_jobs(tmp_path, 4, seconds=0.3), GpuPool([]), max_parallel=2, poll_s=0.02)
    seen = [json.loads((tmp_path / f"seen{i}.json").read_text()) for i in range(4)]
    assert all(r.status == "completed" and r.gpus == "" for r in results)
    assert all(s["gpus"] == "" for s in seen) and all(s["threads"] is not None for s in seen)
    times = sorted(t for s in seen for t in ((s["start"], 1), (s["end"], -1)))
    assert max(itertools.accumulate(d for _, d in times)) == 2


SIGNAL_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from akira.launch.gpus import GpuPool
    from akira.launch.runner import JobSpec, SweepInterrupted, run_jobs
    tmp = Path(sys.argv[1])
    # each job starts a grandchild in its process group; both must go
    child = "import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); " \\
            "open(sys.argv[1], 'w').write(str(p.pid)); time.sleep(120)"
    jobs = [JobSpec(num=i, overrides=[], job_dir=tmp / f"job{i}", command=[sys.executable, "-c", child, str(tmp / f"gc{i}")])
            for i in range(3)]
    def update(results):
        (tmp / "state.json").write_text(json.dumps([r.to_json() for r in results]))
    try:
        run_jobs(jobs, GpuPool(["0", "1"]), poll_s=0.05, kill_grace_s=5, on_update=update)
    except SweepInterrupted as exc:
        update(exc.results)
        sys.exit(130)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_every_child_and_its_process_group(tmp_path, sig):
    proc = subprocess.Popen([PY, "-c", SIGNAL_SCRIPT, str(tmp_path)], cwd=ROOT, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and not all((tmp_path / f"gc{i}").exists() for i in range(2)):
        time.sleep(0.05)
    assert all((tmp_path / f"gc{i}").exists() for i in range(2)), proc.stderr.read().decode()[-2000:]
    grandchildren = [int((tmp_path / f"gc{i}").read_text()) for i in range(2)]
    state = json.loads((tmp_path / "state.json").read_text())
    children = [j["pid"] for j in state if j["pid"]]
    assert len(children) == 2 and all(_alive(p) for p in children + grandchildren)
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == 130
    state = json.loads((tmp_path / "state.json").read_text())
    assert [j["status"] for j in state] == ["interrupted", "interrupted", "not_started"]
    time.sleep(0.3)
    assert not any(_alive(p) for p in children + grandchildren)


# ------------------------------------------------------------------------------------------ real sweeps
def _multirun(args: list[str], timeout: int = 400, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PY, str(ROOT / "train.py"), "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def test_gpu_pool_sweep_failures_and_rerun(tmp_path):
    """4 tiny fields jobs on a fake pool of 2 GPU ids (a fake nvidia-smi answers the utilisation sampler);
    the last (data.grid=4) fails at build time."""
    from tests.test_gpu_monitor import fake_nvidia_smi

    sweep = tmp_path / "sweep"
    args = [*JOB, "data.grid=16,12,10,4", "seed=3", "hydra/launcher=gpu_pool", "hydra.launcher.gpus=[0,1]",
            "hydra.launcher.gpu_sample_interval_s=0.1", f"hydra.sweep.dir={sweep}"]
    smi = fake_nvidia_smi(tmp_path / "bin")
    first = _multirun(args, env={"PATH": f"{smi.parent}{os.pathsep}{os.environ['PATH']}"})
    assert first.returncode == 1, first.stderr[-3000:]
    last = first.stderr.strip().splitlines()[-1]
    assert last.startswith("akira: error: 1 of 4 sweep jobs failed") and "data.grid: must be >= 8" in last
    state = json.loads((sweep / "gpu_pool.json").read_text())
    jobs = state["jobs"]
    assert state["pool"] == ["0", "1"] and len(jobs) == 4
    # the default subdir (<num>_<all overrides>) is over the file-name limit here: <num>_<swept overrides>
    assert [Path(j["job_dir"]).name for j in jobs] == [f"{i}_data.grid={g}" for i, g in enumerate((16, 12, 10, 4))]
    assert [j["status"] for j in jobs] == ["completed"] * 3 + ["failed"] and jobs[3]["returncode"] == 2
    for j in jobs:  # every job, failed or not, recorded the id it was given
        run = json.loads((Path(j["job_dir"]) / "run.json").read_text())
        assert j["gpus"] in ("0", "1") and run["cuda_visible_devices"] == j["gpus"]
        assert run["status"] == ("completed" if j["status"] == "completed" else "config_error")
    for a, b in itertools.combinations(jobs, 2):
        if _overlap(a, b):
            assert a["gpus"] != b["gpus"], (a, b)
    assert any(_overlap(a, b) for a, b in itertools.combinations(jobs, 2))
    for j in jobs[:3]:
        assert json.loads((Path(j["job_dir"]) / "metrics.json").read_text())["test/mse"] > 0
        assert (Path(j["job_dir"]) / "checkpoints" / "last.ckpt").is_file()
    from akira.launch.utilization import pool_usage

    usage = pool_usage(sweep)  # samples of both pool GPUs were taken while the jobs ran
    assert usage["jobs"] == 4 and all(g["samples"] > 0 and g["jobs"] > 0 for g in usage["gpus"].values())
    assert usage["serial_seconds"] > usage["wall_seconds"]  # two jobs at a time

    # re-run into the same dir: finished jobs are skipped, an unfinished one resumes from its last.ckpt
    unfinished = Path(jobs[1]["job_dir"])
    run = json.loads((unfinished / "run.json").read_text())
    run["status"], run["exit_code"] = "interrupted", 130
    (unfinished / "run.json").write_text(json.dumps(run))
    second = _multirun(args)
    assert second.returncode == 1, second.stderr[-3000:]
    jobs2 = json.loads((sweep / "gpu_pool.json").read_text())["jobs"]
    assert [j["status"] for j in jobs2] == ["skipped", "completed", "skipped", "failed"]
    assert [j["resumed"] for j in jobs2] == [False, True, False, True]
    assert jobs2[0]["previous"]["status"] == "completed"
    for j in jobs2:
        attempts = (Path(j["job_dir"]) / "stdout.log").read_text().count("=== gpu_pool")
        assert attempts == (1 if j["status"] == "skipped" else 2)
    resumed = json.loads((unfinished / "run.json").read_text())
    assert resumed["status"] == "completed" and resumed["resumed_from"] == str(unfinished / "checkpoints" / "last.ckpt")
    assert "ckpt_path=last" in resumed["overrides"]

    # a re-run with a changed setting shared by all jobs (not in the short dir names) is refused: it would have
    # skipped or resumed runs of the other configuration
    third = _multirun([a if a != "seed=3" else "seed=4" for a in args])
    assert third.returncode != 0
    assert "holds a run with other overrides" in third.stderr and "seed=3" in third.stderr
    assert json.loads((sweep / "gpu_pool.json").read_text())["jobs"] == jobs2


# a job's stand-in for train.py (hydra.launcher.script): data.grid < 8 fails at run time as in train.py (exit 2),
# unless FAKE_MIN_GRID allows it; writes run.json like a run (status, overrides) for skip/resume
FAKE_APP = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    args = sys.argv[1:]
    run_dir = Path(next(a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir=")).strip("'\\""))
    task = [a for a in args if not a.startswith("hydra.")]
    grid = int(next(a.split("=", 1)[1] for a in task if a.startswith("data.grid=")))
    ok = grid >= int(os.environ.get("FAKE_MIN_GRID", "8"))
    run_dir.mkdir(parents=True, exist_ok=True)
    status = {"status": "completed" if ok else "config_error", "exit_code": 0 if ok else 2, "overrides": task}
    (run_dir / "run.json").write_text(json.dumps(status))
    if not ok:
        print(f"akira: config error: data.grid: must be >= 8 (got {grid})", file=sys.stderr)
    sys.exit(0 if ok else 2)
""")


@pytest.mark.slow   # ~25-30 s of subprocess runs on 2 cores
def test_a_failed_job_does_not_stop_later_batches(tmp_path):
    """hydra.sweeper.max_batch_size=1: the sweeper calls the launcher once per job; the first job fails, the
    others still run, and the sweep ends with the whole sweep's table and exit 1 naming the failed job."""
    app, sweep = tmp_path / "app.py", tmp_path / "sweep"
    app.write_text(FAKE_APP)
    args = [*[o for o in JOB if not o.startswith("data.grid=")], "data.grid=4,16,12", "hydra/launcher=gpu_pool",
            "hydra.launcher.gpus=[]", f"hydra.launcher.script={app}", "hydra.sweeper.max_batch_size=1",
            f"hydra.sweep.dir={sweep}"]
    first = _multirun(args, timeout=120)
    assert first.returncode == 1, first.stderr[-3000:]
    last = first.stderr.strip().splitlines()[-1]
    assert last.startswith("akira: error: 1 of 3 sweep jobs failed: #0 0_data.grid=4 (failed, exit 2)"), last
    assert "data.grid: must be >= 8 (got 4)" in last
    assert "gpu_pool: 3 job(s): 2 completed, 1 failed" in first.stdout  # the whole sweep's table at the end
    jobs = json.loads((sweep / "gpu_pool.json").read_text())["jobs"]
    assert [j["status"] for j in jobs] == ["failed", "completed", "completed"]
    # named by the swept key although each batch holds one job (the same dirs as without batches)
    assert [Path(j["job_dir"]).name for j in jobs] == ["0_data.grid=4", "1_data.grid=16", "2_data.grid=12"]

    # re-run into the same dir, batch by batch: the finished jobs are skipped, the failed one resumes
    second = _multirun(args, timeout=120, env={"FAKE_MIN_GRID": "4"})
    assert second.returncode == 0, second.stderr[-3000:]
    jobs = json.loads((sweep / "gpu_pool.json").read_text())["jobs"]
    assert [(j["status"], j["resumed"]) for j in jobs] == [("completed", True), ("skipped", False),
                                                           ("skipped", False)]


def test_sweep_ablations_is_ten_jobs_named_by_overrides(tmp_path):
    sweep = tmp_path / "study"
    done = _multirun(["experiment=sweep_ablations", "trainer=gpu", "hydra.launcher.gpus=[0,1,2,3]",
                      "hydra.launcher.dry_run=true", f"hydra.sweep.dir={sweep}"], timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads((sweep / "gpu_pool.dry_run.json").read_text())
    assert state["dry_run"] and state["pool"] == ["0", "1", "2", "3"] and not (sweep / "gpu_pool.json").exists()
    jobs = state["jobs"]
    expected = list(itertools.product(ARMS, (1, 2)))
    assert len(jobs) == 10 and all(j["status"] == "planned" for j in jobs)
    for i, (j, (arm, seed)) in enumerate(zip(jobs, expected)):
        assert sorted(j["overrides"]) == sorted([f"experiment={arm}", f"seed={seed}", "ckpt_path=last", "trainer=gpu"])
        assert Path(j["job_dir"]) == sweep / f"{i}_experiment={arm},seed={seed},trainer=gpu"
        assert "experiment=sweep_ablations" not in " ".join(j["command"])
    assert not list(sweep.glob("*/run.json"))  # nothing ran


def test_sweep_ablations_jobs_compose_as_their_arms(compose, tmp_path):
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    cfg = compose_config(["experiment=sweep_ablations"], run_dir=tmp_path)
    assert cfg.hydra.sweeper._target_.endswith("StudySweeper") and cfg.hydra.launcher._target_.endswith("GpuPoolLauncher")
    params = dict(cfg.hydra.sweeper.params)
    assert params["experiment"].split(",") == ARMS and params["seed"] == "1,2"
    from hydra.core.override_parser.overrides_parser import OverridesParser

    batches = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(
        [f"{k}={v}" for k, v in params.items()]), None)
    assert len(batches[0]) == 10
    job = compose(list(batches[0][3]))
    assert job.requires_model == "akira_band" and job.model.mlp == "band" and job.model.wormhole is False
    assert job.optim.band_lrs == "uniform" and job.seed == 2 and job.ckpt_path == "last"


# ------------------------------------------------------------------------------------------ slurm (submitit)
def test_slurm_launcher_config_renders_a_requeueing_sbatch_script(tmp_path, monkeypatch):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    import submitit
    from hydra.core.utils import JobReturn, JobStatus
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
    from omegaconf import OmegaConf

    cfg = compose_config(["hydra/launcher=slurm", "hydra.launcher.partition=gpu", f"hydra.sweep.dir={tmp_path}"],
                         run_dir=tmp_path)
    node = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert node.pop("_target_").endswith("SlurmLauncher")
    assert node["additional_parameters"] == {"requeue": True} and node["max_num_timeout"] >= 1
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    captured = {}

    class Done:
        def results(self):
            ret = JobReturn()
            ret.status, ret.return_value = JobStatus.COMPLETED, None
            return [ret]

    def fake_map_array(self, fn, *args):
        captured["executor"] = self
        return [Done() for _ in args[0]]

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", fake_map_array)
    launcher = SlurmLauncher(**node)
    launcher.config = cfg
    launcher.launch([["seed=1"], ["seed=2"]], initial_job_idx=0)
    text = captured["executor"]._executor._make_submission_file_text("python train.py", "uid")
    for line in ("#SBATCH --requeue", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-task=1",
                 "#SBATCH --signal=USR2@120", "#SBATCH --time=1440"):
        assert line in text, line
    assert captured["executor"]._executor.max_num_timeout == 3


def test_submitit_local_executor_runs_one_tiny_job(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sub"
    done = _multirun([*JOB, "model=linear", "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep}",
                      "hydra.sweep.subdir=${hydra.job.num}"])
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads((sweep / "0" / "run.json").read_text())
    assert run["status"] == "completed" and (sweep / "0" / "metrics.json").is_file()
    assert list((sweep / ".submitit").glob("*/*_result.pkl"))


# ------------------------------------------------------------------------------------------ W&B identity
def test_wandb_group_name_and_tags_come_from_the_sweep(tmp_path, monkeypatch):
    from akira.loggers import wandb_run_identity

    job_dir = tmp_path / "3_experiment=lm_baseline,seed=2"
    cfg = compose_config(["logger=wandb", "seed=2", "tags=[lm]"], run_dir=job_dir)
    assert cfg.logger.wandb.job_type == "train" and cfg.logger.wandb.group is None
    monkeypatch.setenv("AKIRA_SWEEP_DIR", "/o/outputs/sweep_ablations/multiruns/2025-01-01_00-00-00")
    ident = wandb_run_identity(cfg, None, None, list(cfg.logger.wandb.tags))
    assert ident["group"] == "sweep_ablations/2025-01-01_00-00-00" and ident["name"] == job_dir.name
    assert ident["tags"] == ["lm", "train", "seed:2", "sweep:sweep_ablations/2025-01-01_00-00-00"]
    monkeypatch.delenv("AKIRA_SWEEP_DIR")
    alone = wandb_run_identity(cfg, None, None, [])
    assert alone["group"] == cfg.task_name and alone["sweep"] is None
    assert alone["name"] == "logger=wandb,seed=2,tags=[lm]"  # the run's overrides
    assert wandb_run_identity(cfg, "mine", "x", [])["group"] == "mine"


# ------------------------------------------------------------------------------------------ Ctrl-C, real jobs
@pytest.mark.slow
def test_ctrl_c_interrupts_real_jobs_and_the_rerun_resumes_them(tmp_path):
    sweep = tmp_path / "sweep"
    long = [o for o in JOB if not o.startswith(("trainer.max_steps", "trainer.val_check_interval",
                                                "callbacks.last_checkpoint"))]
    args = [PY, str(ROOT / "train.py"), "-m", *long, "trainer.val_check_interval=1000",
            "callbacks.last_checkpoint.every_n_train_steps=5", "seed=1,2", "hydra/launcher=gpu_pool",
            "hydra.launcher.gpus=[0,1]", f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=${hydra.job.num}"]
    proc = subprocess.Popen([*args, "trainer.max_steps=100000"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 240
    lasts = [sweep / str(i) / "checkpoints" / "last.ckpt" for i in range(2)]
    while time.time() < deadline and not all(p.exists() for p in lasts) and proc.poll() is None:
        time.sleep(0.2)
    assert all(p.exists() for p in lasts), proc.stderr.read().decode()[-3000:] if proc.poll() is not None else ""
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    jobs = json.loads((sweep / "gpu_pool.json").read_text())["jobs"]
    assert [j["status"] for j in jobs] == ["interrupted", "interrupted"]
    assert not any(_alive(j["pid"]) for j in jobs)
    for i in range(2):
        run = json.loads((sweep / str(i) / "run.json").read_text())
        assert run["status"] == "interrupted", run.get("error")
    import torch

    saved = [torch.load(p, map_location="cpu", weights_only=False)["global_step"] for p in lasts]
    assert min(saved) >= 5
    rerun = subprocess.run([*args, f"trainer.max_steps={max(saved) + 2}"], cwd=ROOT, capture_output=True, text=True,
                           timeout=400)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    for i in range(2):
        run = json.loads((sweep / str(i) / "run.json").read_text())
        assert run["status"] == "completed" and run["resumed_from"] == str(lasts[i])
        assert run["global_step"] == max(saved) + 2


@pytest.mark.parametrize("bad,key", [("hydra.launcher.gpu_sample_interval_s=-1", "gpu_sample_interval_s"),
                                     ("hydra.launcher.gpus_per_job=3", "gpus_per_job")])
def test_bad_launcher_options_are_config_errors(tmp_path, bad, key):
    done = _multirun([*JOB, "seed=1,2", "hydra/launcher=gpu_pool", "hydra.launcher.gpus=[0,1]",
                      "hydra.launcher.dry_run=true", bad, f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith(f"akira: config error: hydra.launcher.{key}:")
