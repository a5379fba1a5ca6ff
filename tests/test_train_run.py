"""End-to-end runs through akira.run on tiny configs: outputs contract, every model, resume, W&B offline."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from akira.cli import ROOT
from akira.run import evaluate, train
from tests.conftest import TINY, compose_config

FIELDS_MODELS = ["convlstm", "mlp2d", "copy_last", "linear", "spectral2d_turbo"]  # TINY: history 4


def _train(tmp_path: Path, overrides: list[str], fn=train, config_name: str = "train"):
    tiny = TINY if config_name == "train" else [o for o in TINY if not o.startswith("callbacks.")]
    cfg = compose_config(tiny + overrides, config_name=config_name, run_dir=tmp_path)
    return fn(cfg)


@pytest.mark.parametrize("model", FIELDS_MODELS)
def test_fast_dev_run_every_model(tmp_path, model):
    metrics = _train(tmp_path, [f"model={model}", "debug=fast_dev_run"])
    assert metrics["test/mse"] >= 0 and "test_reference/mse" in metrics


def test_outputs_follow_the_contract(tmp_path):
    metrics = _train(tmp_path, ["model=convlstm", "model.hidden=4", "model.layers=1"])
    run = json.loads((tmp_path / "run.json").read_text())
    for key in ("git", "versions", "device", "cuda_visible_devices", "hostname", "command", "overrides", "seed",
                "params", "start_time", "end_time", "status", "exit_code"):
        assert key in run, key
    assert run["status"] == "completed" and run["exit_code"] == 0
    assert {"sha", "dirty"} <= set(run["git"]) and {"torch", "lightning", "hydra"} <= set(run["versions"])
    assert run["params"]["total"] > 0 and sum(run["params"]["groups"].values()) == run["params"]["total"]
    assert set(run["params"]["groups"]) == {"shared", "shared_no_decay"}

    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == pytest.approx(metrics)
    for key in ("val/loss", "val/mse", "test/mse", "test/mae", "test/psnr", "test/ssim", "test/mse_copy_last",
                "test/mse_linear", "test/skill", "test/rollout_mse_h1", "test/rollout_mse_h5", "test/rollout_mse_h10",
                "test_reference/mse", "test_reference/mse_copy_last", "params_total", "params_non_embedding",
                "train_seconds", "throughput/frames_per_sec"):
        assert key in on_disk, key
    assert on_disk["test/skill"] == pytest.approx(1 - on_disk["test/mse"] / on_disk["test/mse_copy_last"], rel=1e-5)
    assert on_disk["test/rollout_mse_h1"] == pytest.approx(on_disk["test/mse"], rel=1e-4)
    assert on_disk["params_total"] == run["params"]["total"]

    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    logged = [r for r in rows if r.get("test/mse")]
    assert logged and float(logged[-1]["test/mse"]) == pytest.approx(on_disk["test/mse"], rel=1e-6)
    assert any(r.get("lr/shared") for r in rows), "LR of the named param group not logged as lr/shared"
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file() and (tmp_path / "checkpoints" / "best.ckpt").is_file()
    assert list((tmp_path / "media").glob("*.png"))
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))


def test_parameter_free_baselines_are_evaluated_only(tmp_path):
    metrics = _train(tmp_path, ["model=copy_last"])
    assert metrics["train_seconds"] == 0 and metrics["params_total"] == 0
    assert metrics["test/mse"] == pytest.approx(metrics["test/mse_copy_last"], rel=1e-6)
    assert metrics["test/skill"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["test/rollout_mse_h10"] == pytest.approx(metrics["test/rollout_mse_h10_copy_last"], rel=1e-5)


def test_linear_baseline_equals_its_own_column(tmp_path):
    metrics = _train(tmp_path, ["model=linear"])
    assert metrics["test/mse"] == pytest.approx(metrics["test/mse_linear"], rel=1e-6)
    # the linear model's own rollout is the iterated linear-extrapolation baseline
    assert metrics["test/rollout_mse_h10"] == pytest.approx(metrics["test/rollout_mse_h10_linear"], rel=1e-5)


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def test_resume_is_equivalent_to_an_uninterrupted_run(tmp_path):
    common = ["model=convlstm", "model.hidden=4", "model.layers=1", "callbacks.best_checkpoint=null", "test=false"]
    straight, part = tmp_path / "straight", tmp_path / "part"
    _train(straight, common + ["trainer.max_steps=8"])
    _train(part, common + ["trainer.max_steps=4"])
    assert _state(part / "checkpoints" / "last.ckpt")["global_step"] == 4
    _train(part, common + ["trainer.max_steps=8", "ckpt_path=last"])
    a, b = _state(straight / "checkpoints" / "last.ckpt"), _state(part / "checkpoints" / "last.ckpt")
    assert b["global_step"] == 8
    run = json.loads((part / "run.json").read_text())
    assert run["resumed_from"].endswith("last.ckpt") and run["global_step"] == 8
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, msg=key)
    # the training curve keeps the first attempt's rows (Lightning's CSV logger deletes metrics.csv on start)
    from akira.report import read_curves

    def steps(run):
        return sorted({s for s, _ in read_curves(run / "metrics.csv")["train/loss"]})

    assert (part / "metrics.part1.csv").is_file()
    assert steps(straight)[:4] == steps(part)[:4] and len(steps(part)) == len(steps(straight))


def test_a_resume_that_trains_nothing_keeps_the_earlier_numbers(tmp_path):
    """Resuming a run that already reached max_steps (a requeue after the last step) trains and validates
    nothing; its metrics.json used to lose the validation and training numbers."""
    common = ["model=mlp2d", "trainer.max_steps=4", "trainer.val_check_interval=2", "test=false"]
    first = _train(tmp_path, common)
    again = _train(tmp_path, common + ["ckpt_path=last"])
    saved = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("val/mse", "train/loss"):
        assert key in first and saved[key] == pytest.approx(first[key]), key
    assert again is not None and saved["train_seconds"] >= first["train_seconds"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_resume_after_kill_continues_from_the_saved_step(tmp_path, sig):
    """SIGKILL (nothing runs) or SIGTERM (Lightning stops at the next step: run.json says interrupted, exit 130)."""
    run_dir = tmp_path / "run"
    args = [sys.executable, str(ROOT / "train.py"), *TINY, "model=convlstm", "model.hidden=4", "model.layers=1",
            "trainer.max_steps=100000", "trainer.val_check_interval=1000", "callbacks.frame_panels=null",
            "callbacks.last_checkpoint.every_n_train_steps=5", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(sig)
    code = proc.wait(timeout=60)
    stderr = proc.stderr.read().decode()
    assert last.exists(), stderr[-2000:]
    if sig == signal.SIGTERM:
        assert code == 130, stderr[-2000:]
        assert stderr.strip().splitlines()[-1] == "akira: interrupted"
        assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    saved = _state(last)["global_step"]
    assert saved >= 5 and saved % 5 == 0
    resume = [a for a in args if not a.startswith("trainer.max_steps")] + [f"trainer.max_steps={saved + 3}",
                                                                           "ckpt_path=last", "test=false"]
    done = subprocess.run(resume, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _state(last)["global_step"] == saved + 3
    assert json.loads((run_dir / "run.json").read_text())["resumed_from"] == str(last)


def test_eval_py_on_a_checkpoint(tmp_path):
    _train(tmp_path / "train", ["model=mlp2d", "test=false"])
    ckpt = tmp_path / "train" / "checkpoints" / "last.ckpt"
    metrics = _train(tmp_path / "eval", ["model=mlp2d", f"ckpt_path={ckpt}"], fn=evaluate, config_name="eval")
    assert "val/mse" in metrics and "test/mse" in metrics
    assert json.loads((tmp_path / "eval" / "run.json").read_text())["status"] == "completed"
    # without a checkpoint a trainable model is refused (it used to score its random init as if it were trained)
    from akira.config import ConfigError

    with pytest.raises(ConfigError, match="ckpt_path"):
        _train(tmp_path / "eval_none", ["model=mlp2d", "ckpt_path=null"], fn=evaluate, config_name="eval")


def test_wandb_offline_run_writes_local_files(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    _train(tmp_path, ["model=linear", "logger=wandb", "logger.wandb.tags=[unit]"])
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert runs and list(runs[0].glob("run-*.wandb"))
    run_id = (tmp_path / "wandb_run_id.txt").read_text().strip()
    assert runs[0].name.endswith(run_id)
    assert (tmp_path / "metrics.csv").is_file()   # the offline CSV log comes with it


@pytest.mark.parametrize("args,key", [
    (["data.grid=4"], "data.grid"),
    (["data.history=1"], "data.history"),
    (["data.horizon=3"], "data.horizon"),
    (["model=mlp2d", "data.batch_size=0"], "data.batch_size"),
    (["ckpt_path=/nonexistent/x.ckpt"], "ckpt_path"),
    (["trainer.precision=17"], "trainer.precision"),        # these two used to end as "run failed", exit 1
    (["trainer.devices=0"], "trainer.devices"),
])
def test_bad_input_exits_nonzero_naming_the_key(tmp_path, args, key):
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *args, f"hydra.run.dir={tmp_path}"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert key in last and last.startswith("akira: config error:")


@pytest.mark.parametrize("preset", ["overfit", "profiler"])
def test_debug_presets_run(tmp_path, preset):
    metrics = _train(tmp_path, [f"debug={preset}", "model=mlp2d", "trainer.max_steps=3",
                                "trainer.val_check_interval=3"])
    assert "test/mse" in metrics


def test_tensorboard_logger_gets_scalars_and_panels(tmp_path):
    _train(tmp_path, ["model=mlp2d", "logger=tensorboard"])
    events = list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    assert events
    assert "train/loss" in (tmp_path / "metrics.csv").read_text()   # the offline CSV log comes with it
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert "train/loss" in acc.Tags()["scalars"] and any(t.startswith("media/") for t in acc.Tags()["images"])


def test_fused_optimizer_with_bf16_and_clipping(tmp_path):
    """Lightning refuses to clip for fused optimizers under AMP; our tasks clip directly (bf16 has no scaler)."""
    metrics = _train(tmp_path, ["model=mlp2d", "debug=fast_dev_run", "trainer.precision=bf16-mixed",
                                "optim.fused=true", "trainer.gradient_clip_val=0.5"])
    assert "test/mse" in metrics


def test_clip_gradients_bounds_the_norm():
    from types import SimpleNamespace

    from akira.tasks.configure import clip_gradients

    p = torch.nn.Parameter(torch.ones(10))
    p.grad = torch.full((10,), 3.0)
    opt = torch.optim.Adam([p])
    clip_gradients(SimpleNamespace(trainer=SimpleNamespace(precision="bf16-mixed")), opt, 1.0, "norm")
    assert p.grad.norm().item() == pytest.approx(1.0, rel=1e-5)


def test_run_failure_is_one_console_line_with_the_traceback_in_the_log(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "experiment=lm_baseline", "data=wikitext2",
                           f"data.local_dir={tmp_path}/missing", "data.tokenizer=byte", f"hydra.run.dir={tmp_path}/run"],
                          capture_output=True, text=True, cwd=ROOT, timeout=180)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "Error executing job" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("akira: error: run failed:") and "missing" in last
    assert "Traceback" in (tmp_path / "run" / "train.log").read_text()
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "failed"


def test_basic_multirun_keeps_going_after_a_failed_job(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "-m", *TINY, "model=linear", "data.grid=4,16",
                           f"hydra.sweep.dir={tmp_path}"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "data.grid" in proc.stderr.strip().splitlines()[-1]
    done = [json.loads(p.read_text())["status"] for p in tmp_path.glob("*/run.json")]
    assert sorted(done) == ["completed", "config_error"]


def test_sigterm_outside_lightning_is_recorded_as_an_interrupt(tmp_path, monkeypatch):
    """A SIGTERM during setup (outside Lightning's own handlers) used to kill the run with run.json left at
    "running"; now it is an interrupt, and the previous handler comes back afterwards."""
    before = signal.getsignal(signal.SIGTERM)

    def stopped_during_setup(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        raise AssertionError("SIGTERM was not delivered")

    _assert_run_interrupted(tmp_path, monkeypatch, stopped_during_setup)
    assert signal.getsignal(signal.SIGTERM) is before


def _assert_run_interrupted(tmp_path, monkeypatch, build_and_run) -> None:
    """Train with `akira.run._build_and_run` replaced by `build_and_run`: the run must end as an interrupt
    (KeyboardInterrupt raised, run.json status interrupted, exit code 130)."""
    import akira.run as run_module

    monkeypatch.setattr(run_module, "_build_and_run", build_and_run)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, ["model=mlp2d"])
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["status"] == "interrupted" and run["exit_code"] == 130


def test_an_error_caused_by_ctrl_c_is_recorded_as_an_interrupt(tmp_path, monkeypatch):
    """torch.save's zip writer turns a Ctrl-C mid-write into a RuntimeError: the run is interrupted, not failed."""
    import akira.run as run_module

    def interrupted_mid_write(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            raise RuntimeError("PytorchStreamWriter failed writing file data") from None
        raise AssertionError("SIGINT was not delivered")

    _assert_run_interrupted(tmp_path, monkeypatch, interrupted_mid_write)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is restored

    def plain_failure(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(run_module, "_build_and_run", plain_failure)
    with pytest.raises(RuntimeError, match="run failed: RuntimeError: boom"):
        _train(tmp_path, ["model=mlp2d"])
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["status"] == "failed" and run["exit_code"] == 1
