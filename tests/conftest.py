"""Shared fixtures: compose the real conf/ tree in-process, as train.py would."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from akira.cli import CONF_DIR, ROOT
from akira.config import register_configs
from akira.models.lm import triton_support

os.environ.setdefault("AKIRA_ROOT", str(ROOT))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(1)  # the suite also starts train.py subprocesses: never oversubscribe 2 cores

# The LM's Triton kernels run on CUDA, or on CPU under TRITON_INTERPRET=1 with Triton installed (not in the CPU CI)
KERNEL_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
needs_triton = pytest.mark.skipif(
    not triton_support.available() or (KERNEL_DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") != "1"),
    reason="needs Triton on CUDA, or TRITON_INTERPRET=1 on CPU")
without_triton = pytest.mark.skipif(triton_support.available(), reason="Triton is installed")


def assert_compiled_bf16_lm_matches(ref: torch.nn.Module, model: torch.nn.Module, vocab: int = 512) -> None:
    """One bf16-autocast step on CUDA of ``ref`` (eager) and ``model`` (compiled, fullgraph) on the same random
    batch: losses within 0.2%, every parameter's gradient within 3% (relative norm) of ref's."""
    idx = torch.randint(0, vocab, (4, 129), device="cuda")
    losses = []
    for m in (ref, torch.compile(model, fullgraph=True)):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = m(idx[:, :-1], idx[:, 1:])
        loss.backward()
        losses.append(loss.item())
    assert abs(losses[0] - losses[1]) < 2e-3 * abs(losses[0])
    for (name, p), q in zip(ref.named_parameters(), model.parameters()):
        rel = (p.grad - q.grad).norm() / p.grad.norm().clamp(min=1e-12)
        assert rel < 3e-2, name


def compose_config(overrides: list[str], config_name: str = "train", run_dir: Path | None = None):
    """Compose `conf/<config_name>.yaml` with overrides; with `run_dir`, set up Hydra's runtime too."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = hydra_compose(config_name=config_name, overrides=overrides, return_hydra_config=run_dir is not None)
    if run_dir is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(run_dir)
            cfg.hydra.job.name = config_name
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture
def compose():
    yield compose_config
    GlobalHydra.instance().clear()


# A tiny, fast configuration for end-to-end runs on 2 CPU cores.
TINY = [
    "data.grid=16", "data.batch_size=4", "data.val_streams=4", "data.test_streams=4", "data.history=4",
    "trainer.max_steps=4", "trainer.log_every_n_steps=1", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
    "callbacks.progress_bar=null", "callbacks.last_checkpoint.every_n_train_steps=2",
    "callbacks.frame_panels.every_n_steps=2",
]
