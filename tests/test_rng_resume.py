"""A resumed run continues with the uninterrupted run's random numbers (akira.callbacks.rng_state)."""
from __future__ import annotations

import csv
import logging
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pytorch_lightning.trainer.states import TrainerFn

from akira.callbacks.rng_state import KEY, RNGState
from akira.data.text.fixture import wikitext_like
from akira.run import train
from tests.conftest import compose_config

# a tiny LM with dropout (attention + residual), a constant LR (the schedule's length is max_steps, which differs
# between the interrupted and the uninterrupted run) and a last.ckpt at step 2
RUN = ["experiment=lm_baseline", "model.n_layer=1", "model.d_model=32", "model.n_head=2", "model.max_seq_len=32",
       "model.dropout=0.2", "optim.schedule=constant", "optim.warmup_steps=0", "task.band_stats_every_n_steps=0",
       "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1",
       "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "callbacks.progress_bar=null",
       "callbacks.last_checkpoint.every_n_train_steps=2", "test=false"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("corpus")
    for split, seed, n in (("train", 0, 4), ("valid", 1, 1), ("test", 2, 1)):
        (root / f"{split}.txt").write_text(wikitext_like(n_articles=n, seed=seed))
    return ["data=text_local", f"data.train_path={root}/train.txt", f"data.valid_path={root}/valid.txt",
            f"data.test_path={root}/test.txt", "data.tokenizer=byte", "data.seq_len=32", "data.batch_size=4",
            f"data.cache_dir={root}/cache", "data.num_proc=1"]


def _train(run_dir, overrides):
    train(compose_config(overrides, run_dir=run_dir))
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    rows = csv.DictReader((run_dir / "metrics.csv").open())   # this attempt's rows only
    return ckpt, [float(r["train/loss"]) for r in sorted(rows, key=lambda r: int(r["step"])) if r.get("train/loss")]


@pytest.mark.parametrize(("enabled", "val_every"), [(True, 2), (True, 3), (False, 2)],
                         ids=["rng_state-val_at_ckpt", "rng_state-val_elsewhere", "callbacks.rng_state=null"])
def test_resumed_run_draws_the_uninterrupted_runs_dropout_masks(tmp_path, data, enabled, val_every):
    """Validation at the checkpoint's step or not: what runs between the save and the next step in either run
    (validation, the sanity check, a new DataLoader iterator drawing its base seed) must not shift the stream."""
    common = data + RUN + [f"trainer.val_check_interval={val_every}"] + ([] if enabled else ["callbacks.rng_state=null"])
    straight, straight_loss = _train(tmp_path / "straight", common + ["trainer.max_steps=4"])
    part, _ = _train(tmp_path / "part", common + ["trainer.max_steps=2"])
    assert part["global_step"] == 2 and (KEY in part) == enabled
    resumed, resumed_loss = _train(tmp_path / "part", common + ["trainer.max_steps=4", "ckpt_path=last"])
    assert resumed["global_step"] == straight["global_step"] == 4
    assert len(straight_loss) == 4 and len(resumed_loss) == 2   # the losses of training steps 3 and 4
    same_loss = resumed_loss == pytest.approx(straight_loss[2:], rel=1e-6, abs=0)
    same_weights = all(torch.allclose(resumed["state_dict"][k], v, rtol=1e-6, atol=1e-7)
                       for k, v in straight["state_dict"].items())
    if enabled:
        assert same_loss, (straight_loss, resumed_loss)
        for key, value in straight["state_dict"].items():
            torch.testing.assert_close(resumed["state_dict"][key], value, rtol=1e-6, atol=1e-7, msg=key)
    else:  # the defect this callback fixes: other dropout masks after the resume
        assert not same_loss and not same_weights


def _fitting(rank: int = 0, world_size: int = 1):
    return SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.FITTING), global_rank=rank, world_size=world_size,
                           is_global_zero=rank == 0, global_step=7,
                           strategy=SimpleNamespace(root_device=torch.device("cpu")))


def _draws() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_states_round_trip_and_fallbacks(caplog):
    cb, trainer, checkpoint = RNGState(), _fitting(), {"global_step": 7}
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    cb.on_save_checkpoint(trainer, None, checkpoint)
    expected = _draws()
    # weights_only-loadable: no numpy objects in the checkpoint
    assert not any(isinstance(v, np.ndarray) for v in checkpoint[KEY]["per_rank"][0]["numpy"])
    cb.on_train_batch_start(trainer, None, None, 0)   # the uninterrupted run re-syncs to the saved state
    assert _draws() == expected

    resumed = RNGState()
    torch.manual_seed(2), np.random.seed(2), random.seed(2)
    resumed.on_load_checkpoint(trainer, None, checkpoint)
    torch.rand(5)                                      # e.g. a DataLoader iterator's base seed: overwritten
    resumed.on_train_batch_start(trainer, None, None, 0)
    assert _draws() == expected

    # two ranks saved, resumed on one: a warning, rank 0's streams
    other = dict(checkpoint[KEY]["per_rank"][0], torch=torch.zeros_like(checkpoint[KEY]["per_rank"][0]["torch"]))
    two = {"global_step": 7, KEY: {"world_size": 2, "per_rank": [checkpoint[KEY]["per_rank"][0], other]}}
    with caplog.at_level(logging.WARNING, logger="akira"):
        resumed.on_load_checkpoint(trainer, None, two)
        resumed.on_train_batch_start(trainer, None, None, 0)
        assert _draws() == expected and "of 2 ranks, this run has 1" in caplog.text
        caplog.clear()
        resumed.on_load_checkpoint(_fitting(rank=1, world_size=2), None, two)   # rank 1 takes its own
        assert torch.equal(resumed._states["torch"], other["torch"]) and not caplog.text
        # an older checkpoint: one warning, the RNG is left alone; evaluation never touches it
        fresh = RNGState()
        fresh.on_load_checkpoint(trainer, None, {"global_step": 7})
        assert fresh._states is None and caplog.text.count("has no RNG states") == 1
        evaluating = _fitting()
        evaluating.state.fn = TrainerFn.TESTING
        fresh.on_load_checkpoint(evaluating, None, checkpoint)
        assert fresh._states is None


@pytest.mark.slow
def test_ddp_resume_restores_each_ranks_states(tmp_path, data):
    """trainer=ddp on 2 CPU processes (gloo): both ranks' states in the checkpoint, the same losses after a resume."""
    import os
    import subprocess
    import sys

    from akira.cli import ROOT

    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
           "data.batch_size=2", "trainer.val_check_interval=2"]

    def run(run_dir, extra):
        done = subprocess.run([sys.executable, str(ROOT / "train.py"), *data, *RUN, *ddp, *extra,
                               f"hydra.run.dir={run_dir}"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert done.returncode == 0, done.stderr[-3000:]
        ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        rows = csv.DictReader((run_dir / "metrics.csv").open())
        return ckpt, [float(r["train/loss"]) for r in sorted(rows, key=lambda r: int(r["step"])) if r.get("train/loss")]

    straight, straight_loss = run(tmp_path / "straight", ["trainer.max_steps=4"])
    part, _ = run(tmp_path / "part", ["trainer.max_steps=2"])
    assert part[KEY]["world_size"] == 2 and len(part[KEY]["per_rank"]) == 2
    resumed, resumed_loss = run(tmp_path / "part", ["trainer.max_steps=4", "ckpt_path=last"])
    assert resumed_loss == pytest.approx(straight_loss[2:], rel=1e-6, abs=0)
    for key, value in straight["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][key], value, rtol=1e-6, atol=1e-7, msg=key)


def _draws() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_collect_and_set_rng_states_round_trip_through_a_checkpoint(tmp_path):
    """Every generator continues from the saved state, also after a save + `torch.load(weights_only=True)`."""
    from akira.callbacks.rng_state import _from_checkpoint, _to_checkpoint, collect_rng_states, set_rng_states
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    states = collect_rng_states(include_cuda=False)
    first = _draws()
    torch.save(_to_checkpoint(states), tmp_path / "rng.pt")
    assert _draws() != first
    set_rng_states(_from_checkpoint(torch.load(tmp_path / "rng.pt", weights_only=True)))
    assert _draws() == first


def test_states_saved_by_lightnings_private_helper_still_load():
    """Checkpoints written before the callback had its own helpers hold Lightning's `_collect_rng_states` layout."""
    seed_utils = pytest.importorskip("lightning_fabric.utilities.seed")
    if not hasattr(seed_utils, "_collect_rng_states"):
        pytest.skip("this Lightning has no _collect_rng_states")
    from akira.callbacks.rng_state import _from_checkpoint, _to_checkpoint, collect_rng_states, set_rng_states
    old = seed_utils._collect_rng_states(include_cuda=False)
    assert old.keys() == collect_rng_states(include_cuda=False).keys()
    first = _draws()
    set_rng_states(_from_checkpoint(_to_checkpoint(old)))
    assert _draws() == first
