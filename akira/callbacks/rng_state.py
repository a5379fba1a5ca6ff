"""Global RNG states (torch CPU, torch CUDA, numpy, python `random`) in checkpoints, so that a resumed run draws
the random numbers the uninterrupted run draws (dropout masks, the fused band-MLP kernel's dropout seed, ...).

What is saved is the state right after the last completed training step: the first checkpoint written at a global
step takes it, and every later save at that step (best after validation, the final save) reuses it. The state is
applied at the start of the next training batch, both when resuming (`trainer.fit(..., ckpt_path=...)`) and in the
uninterrupted run after each save. So whatever ran in between -- validation, Lightning's sanity check, a DataLoader
iterator drawing its base seed from torch's CPU generator, Lightning re-seeding in `strategy.setup_environment` --
does not shift the training stream, and both runs train steps k+1... from the same state. (The numbers those
in-between draws consumed are drawn again by the next step: harmless.) DataLoader workers are seeded from the
base seed as before; akira's datasets are pure functions of (seed, step) and draw nothing.

Multi-process (DDP/FSDP): each rank has its own streams. At a save, every rank's state is gathered (all ranks
call `trainer.save_checkpoint`, as Lightning requires) into `checkpoint["rng_states"]["per_rank"]`, indexed by
global rank; on resume, each rank takes its own. With another world size, a warning is logged and rank r takes
saved rank `r % saved_world_size`'s state (an exact continuation is impossible then anyway). CUDA states are
collected only when training on CUDA, and restored for the devices that exist. Checkpoints without the key (from
before this callback) resume as before, with one warning; evaluation (`validate`/`test` with a checkpoint) never
touches the RNG.
"""
from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn

log = logging.getLogger("akira")

KEY = "rng_states"


def collect_rng_states(include_cuda: bool) -> dict[str, Any]:
    """This process's RNG states: ``torch`` (CPU), ``numpy``, ``python`` and, with include_cuda, ``torch.cuda`` (one
    per visible device). The keys and layouts are those of Lightning's private ``_collect_rng_states``, so
    checkpoints written with it (before 2026-12-03) load the same."""
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if include_cuda:
        states["torch.cuda"] = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Apply what `collect_rng_states` returned (``torch.cuda`` only where present)."""
    torch.set_rng_state(states["torch"])
    if states.get("torch.cuda"):
        torch.cuda.set_rng_state_all(states["torch.cuda"])
    np.random.set_state(states["numpy"])
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))


def _to_checkpoint(states: dict[str, Any]) -> dict[str, Any]:
    """numpy's key array as a tensor: a checkpoint must load with `torch.load(weights_only=True)`."""
    out = dict(states)
    if "numpy" in out:
        kind, keys, pos, has_gauss, gauss = out["numpy"]
        out["numpy"] = (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))
    return out


def _from_checkpoint(states: dict[str, Any]) -> dict[str, Any]:
    out = dict(states)
    if "numpy" in out:
        kind, keys, pos, has_gauss, gauss = out["numpy"]
        out["numpy"] = (kind, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, gauss)
    if "torch.cuda" in out:   # only the devices this process has
        out["torch.cuda"] = list(out["torch.cuda"])[:torch.cuda.device_count() if torch.cuda.is_available() else 0]
    return out


class RNGState(pl.Callback):
    """Saves this run's RNG states in every checkpoint and continues from them on resume (module docstring)."""

    def __init__(self) -> None:
        self._states: dict[str, Any] | None = None   # to apply at the next training batch start
        self._step = -1                              # the global step they belong to

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if self._states is None or self._step != trainer.global_step:
            cuda = trainer.strategy.root_device.type == "cuda"
            self._states, self._step = collect_rng_states(include_cuda=cuda), trainer.global_step
        states = _to_checkpoint(self._states)
        per_rank = [states]
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            per_rank = [None] * trainer.world_size
            torch.distributed.all_gather_object(per_rank, states)
        checkpoint[KEY] = {"world_size": len(per_rank), "per_rank": per_rank}

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn != TrainerFn.FITTING:
            return
        saved = checkpoint.get(KEY)
        if not saved:
            if trainer.is_global_zero:
                log.warning("the checkpoint has no RNG states (written before akira.callbacks.rng_state): the "
                            "resumed run's random numbers (dropout masks, ...) differ from an uninterrupted run's")
            return
        per_rank = saved["per_rank"]
        if len(per_rank) != trainer.world_size and trainer.is_global_zero:
            log.warning("the checkpoint's RNG states are of %d ranks, this run has %d: rank r continues saved rank "
                        "r %% %d's streams (not an exact continuation)", len(per_rank), trainer.world_size,
                        len(per_rank))
        self._states = _from_checkpoint(per_rank[trainer.global_rank % len(per_rank)])
        self._step = int(checkpoint.get("global_step", -1))

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._states is not None:
            set_rng_states(self._states)
            self._states = None
