"""trainer=ddp: one run on 2 CPU processes (gloo) writes one run directory with one set of outputs."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

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


def _train_loss_curve(run_dir) -> dict[int, float]:
    import csv

    rows = csv.DictReader((run_dir / "metrics.csv").open())
    return {int(r["step"]): float(r["train/loss"]) for r in rows if r.get("train/loss")}


def _final_weights(run_dir) -> dict:
    import torch

    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


def _lm_data(tmp_path) -> list[str]:
    from akira.data.text.fixture import wikitext_like

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split, seed, n in (("train", 0, 6), ("valid", 1, 2), ("test", 2, 2)):
        (corpus / f"{split}.txt").write_text(wikitext_like(n_articles=n, seed=seed))
    return ["experiment=lm_baseline", "data=text_local", f"data.train_path={corpus}/train.txt",
            f"data.valid_path={corpus}/valid.txt", f"data.test_path={corpus}/test.txt", "data.tokenizer=byte",
            "data.seq_len=32", f"data.cache_dir={tmp_path}/cache", "data.num_proc=1", "model.n_layer=2",
            "model.d_model=64", "model.n_head=4", "model.max_seq_len=32", "model.dropout=0.0",
            "optim.warmup_steps=2", "task.band_stats_every_n_steps=0"]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["fields", "lm"])
def test_ddp_two_ranks_match_one_process_at_the_same_global_batch(tmp_path, task):
    """2 ranks x batch B == 1 process x batch 2B: the same logged loss curve and the same final weights."""
    # whole val/test sets at a fixed eval batch: the same evaluation whatever the number of ranks
    common = ["trainer.max_steps=6", "trainer.log_every_n_steps=1", "trainer.val_check_interval=3",
              "trainer.limit_val_batches=1.0", "trainer.limit_test_batches=1.0", "data.eval_batch_size=4",
              "trainer.enable_progress_bar=false",
              "trainer.enable_model_summary=false", "callbacks.progress_bar=null", "callbacks.frame_panels=null",
              "callbacks.last_checkpoint.every_n_train_steps=3", "trainer.precision=32-true"]
    if task == "fields":
        data = [o for o in TINY if o.startswith("data.") and not o.startswith("data.batch_size")] + ["model=mlp2d"]
        batch = "data.batch_size"
    else:
        data, batch = _lm_data(tmp_path), "data.batch_size"
    runs = {"one": ["trainer=cpu", f"{batch}=4"],
            "ddp": ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", f"{batch}=2"]}
    curves, weights, rates, finals = {}, {}, {}, {}
    for name, extra in runs.items():
        run_dir = tmp_path / name
        done = subprocess.run([sys.executable, str(ROOT / "train.py"), *data, *common, *extra,
                               f"hydra.run.dir={run_dir}"], cwd=ROOT, capture_output=True, text=True, timeout=400,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert done.returncode == 0, done.stderr[-3000:]
        curves[name], weights[name] = _train_loss_curve(run_dir), _final_weights(run_dir)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        unit = "frames" if task == "fields" else "tokens"
        rates[name] = metrics[f"throughput/{unit}_per_sec"], metrics[f"throughput/{unit}_per_sec_per_device"]
        finals[name] = {k: metrics[k] for k in (("val/loss", "test/mse", "test/mse_copy_last", "test_reference/mse")
                                                if task == "fields" else ("val/loss", "val/ppl", "test/ppl"))}
    for key, value in finals["one"].items():  # evaluation is the same whatever the number of ranks
        assert finals["ddp"][key] == pytest.approx(value, rel=1e-4), key
    assert rates["one"][1] == pytest.approx(rates["one"][0]) and rates["ddp"][1] == pytest.approx(rates["ddp"][0] / 2)
    assert sorted(curves["one"]) == sorted(curves["ddp"]) and len(curves["one"]) >= 5
    for step, loss in curves["one"].items():
        assert curves["ddp"][step] == pytest.approx(loss, rel=1e-4), step
    assert weights["one"].keys() == weights["ddp"].keys()
    import torch

    for key, value in weights["one"].items():
        torch.testing.assert_close(weights["ddp"][key], value, rtol=1e-4, atol=1e-5, msg=key)
