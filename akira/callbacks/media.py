"""Frame panels (current, target, prediction, |error|) to `media/` and to TensorBoard / W&B."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl

from akira.viz import frame_panel, save_png


def log_image(trainer: pl.Trainer, key: str, image: np.ndarray, step: int) -> None:
    """Send an `(H, W, 3)` uint8 image to every logger that takes images."""
    for logger in trainer.loggers:
        name = type(logger).__name__
        if name == "TensorBoardLogger":
            logger.experiment.add_image(key, image, step, dataformats="HWC")
        elif name == "WandbLogger":
            logger.log_image(key=key, images=[image], step=step)


class FramePanels(pl.Callback):
    """Every `every_n_steps` training steps, and once per test protocol, save a 2x2 panel.

    Works with any task that has `panel_frames(batch) -> (current, target, prediction)`.
    """

    def __init__(self, every_n_steps: int = 200, media_dir: str = "media"):
        self.every_n_steps = int(every_n_steps)
        self.media_dir = Path(media_dir)
        self._tested: set[int] = set()

    def _save(self, trainer, pl_module, batch, tag: str) -> None:
        if not trainer.is_global_zero or not hasattr(pl_module, "panel_frames"):
            return
        current, target, pred = pl_module.panel_frames(batch)
        title = f"{tag} step {trainer.global_step}"
        image = frame_panel(current, target, pred, title=title)
        save_png(image, self.media_dir / f"{tag}_step{trainer.global_step:06d}.png")
        log_image(trainer, f"media/{tag}", image, trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0:
            self._save(trainer, pl_module, batch, "train")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if dataloader_idx not in self._tested:
            self._tested.add(dataloader_idx)
            protocols = getattr(pl_module, "test_protocols", None) or [str(dataloader_idx)]
            self._save(trainer, pl_module, batch, f"test_{protocols[dataloader_idx]}")
