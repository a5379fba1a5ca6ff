"""How checkpoints are written: atomically (akira.atomic: temp file in the same directory, fsync, os.replace), and
the checkpoint of a finished fit with the loop state of its last training step (`save_final_checkpoint`)."""
from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from akira.atomic import atomic_open


class AtomicCheckpointIO(TorchCheckpointIO):
    """A crash or kill mid-write never leaves a truncated `.ckpt`: readers see the old or the new file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        with atomic_open(path, "wb") as f:
            torch.save(checkpoint, f)


class FinalCheckpoint(pl.Callback):
    """Lets `save_final_checkpoint` write a finished fit's checkpoint with the loop state of the fit's last training
    step, as ModelCheckpoint(every_n_train_steps) writes it in that step's `on_train_batch_end`.

    Once `trainer.fit` has returned, Lightning's loop counters are past the end of training: the epoch is marked
    complete (`current_epoch` + 1) and the logging step (`_batches_that_stepped`) has advanced. A run resumed from a
    checkpoint of that state with a larger `max_steps` starts a new epoch and, when the last step had validated, logs
    one step later than an uninterrupted run (Lightning's restart logic takes a completed batch for one saved at
    `on_validation_end`). From the counters of the last `on_train_batch_end` it continues as an uninterrupted run
    does, and skips the last step's validation, which the finished run has done. Everything else in the checkpoint
    (weights, optimizer and scheduler, callback states such as the best-checkpoint tracking after the final
    validation, RNG states, the datamodule's position) is the state after that same step, as at the end of fit.

    A fit that trained nothing (resumed at `max_steps`) keeps the loop state it loaded: it is saved unchanged.
    """

    def __init__(self) -> None:
        self._last_step: tuple[int, int, dict] | None = None   # (global_step, current_epoch, fit_loop state)
        self._saving = False

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_step = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # fit_loop.state_dict() builds fresh dicts of small counters (our train loaders hold no loader state)
        self._last_step = (trainer.global_step, trainer.current_epoch, trainer.fit_loop.state_dict())

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if not self._saving or self._last_step is None:
            return
        step, epoch, fit_loop = self._last_step
        if step != trainer.global_step:   # not the state of this trainer's last step: leave it as is
            return
        checkpoint["loops"]["fit_loop"] = fit_loop
        checkpoint["epoch"] = epoch

    def save(self, trainer: pl.Trainer, path) -> None:
        self._saving = True
        try:
            trainer.save_checkpoint(path)
        finally:
            self._saving = False


def save_final_checkpoint(trainer: pl.Trainer, path) -> None:
    """`trainer.save_checkpoint(path)` after `trainer.fit`, through the trainer's FinalCheckpoint callback where it
    has one, so that a run resumed from it (with a larger `max_steps`) continues as the uninterrupted run would."""
    final = next((cb for cb in trainer.callbacks if isinstance(cb, FinalCheckpoint)), None)
    if final is None:
        trainer.save_checkpoint(path)
    else:
        final.save(trainer, path)
