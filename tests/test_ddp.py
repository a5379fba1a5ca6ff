"""trainer=ddp: one run on 2 CPU processes (gloo) writes one run directory with one set of outputs."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from akira.cli import ROOT
from tests.conftest import TINY, compose_config


def test_ddp_config_composes_for_gpus_and_fsdp():
    cfg = compose_config(["trainer=ddp"])
    assert (cfg.trainer.strategy, cfg.trainer.accelerator, cfg.trainer.precision) == ("ddp", "gpu", "bf16-mixed")
    assert cfg.trainer.devices == "auto" and cfg.trainer.num_nodes == 1
    assert compose_config(["trainer=ddp", "trainer.strategy=fsdp", "trainer.num_nodes=2"]).trainer.strategy == "fsdp"


def test_ddp_on_two_cpu_processes_writes_one_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    args = [sys.executable, str(ROOT / "train.py"), *[o for o in TINY if not o.startswith("trainer.max_steps")],
            "trainer.max_steps=2", "model=mlp2d", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
            "trainer.precision=32-true", f"hydra.run.dir={run_dir}"]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # rank 1 wrote into the same directory
    assert (run_dir / "train_ddp_process_1.log").exists(), "rank 1 did not run under Lightning's DDP launcher"
    assert len(list(tmp_path.rglob("metrics.json"))) == 1 and len(list(tmp_path.rglob("run.json"))) == 1
    assert len(list(tmp_path.rglob(".hydra"))) == 1 and len(list(tmp_path.rglob("metrics.csv"))) == 1
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "completed" and run["global_step"] == 2
    assert "trainer=ddp" in run["overrides"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/mse"] > 0 and metrics["params_total"] == run["params"]["total"]
