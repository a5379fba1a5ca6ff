"""Attention statistics of the spectral 2D predictor: logged as `attn/<name>` and to attention_stats.csv,
plus maps (wormhole link counts, temporal weight per age) every `maps_every_n_steps` to `media/`.

Columns: step, train_loss and every entry of the model's `last_stats` (temporal/neighbor entropy, wormhole
links, link rate, positions with links, mean link similarity, per-band energy). The reference's constant
columns (mean weights 1/T and 1/9) are not logged: they carry no information.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from akira.callbacks.media import log_image
from akira.viz import save_png


def _model(pl_module):
    model = getattr(pl_module, "model", None)
    return getattr(model, "_orig_mod", model)


def attention_map_image(link_counts: torch.Tensor, temporal_weights: torch.Tensor | None, title: str) -> np.ndarray:
    """`(H, W)` link counts and `(H, W, T)` temporal weights -> `(H_img, W_img, 3)` uint8 figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = 1 + (temporal_weights is not None) * 2
    fig = Figure(figsize=(4 * panels, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, panels, 1)
    im = ax.imshow(link_counts.float().cpu().numpy(), cmap="viridis")
    ax.set_title("wormhole links per pixel")
    fig.colorbar(im, ax=ax, fraction=0.046)
    if temporal_weights is not None:
        w = temporal_weights.float().cpu()
        ages = torch.arange(w.shape[-1] - 1, -1, -1, dtype=torch.float32)  # last slot = current frame
        ax = fig.add_subplot(1, panels, 2)
        im = ax.imshow((w * ages).sum(-1).numpy(), cmap="magma")
        ax.set_title("temporal: mean attended age")
        fig.colorbar(im, ax=ax, fraction=0.046)
        ax = fig.add_subplot(1, panels, 3)
        ax.bar(np.arange(w.shape[-1]), w.reshape(-1, w.shape[-1]).mean(0).numpy())
        ax.set_title("temporal weight per slot (oldest..newest)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


class AttentionStats(pl.Callback):
    """Every `every_n_steps`: log the model's `last_stats`; every `maps_every_n_steps`: attention maps."""

    def __init__(self, csv_path: str = "attention_stats.csv", every_n_steps: int = 10,
                 maps_every_n_steps: int = 200, media_dir: str = "media"):
        self.csv_path = Path(csv_path)
        self.every_n_steps = max(1, int(every_n_steps))
        self.maps_every_n_steps = int(maps_every_n_steps)
        self.media_dir = Path(media_dir)
        self._columns: list[str] | None = None

    def _write_row(self, row: dict) -> None:
        if self._columns is None:
            self._columns = list(row)
            if self.csv_path.exists():  # resumed run: keep the existing file and its header
                with self.csv_path.open() as f:
                    header = next(csv.reader(f), None)
                self._columns = header or self._columns
            else:
                self.csv_path.parent.mkdir(parents=True, exist_ok=True)
                with self.csv_path.open("w", newline="") as f:
                    csv.writer(f).writerow(self._columns)
        with self.csv_path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self._columns, extrasaction="ignore").writerow(row)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        model = _model(pl_module)
        stats = getattr(model, "last_stats", None)
        step = trainer.global_step
        if stats and step % self.every_n_steps == 0:
            values = {k: float(v) for k, v in stats.items()}
            pl_module.log_dict({f"attn/{k}": v for k, v in values.items() if math.isfinite(v)},
                               on_step=True, on_epoch=False)
            if trainer.is_global_zero:
                loss = outputs["loss"] if isinstance(outputs, dict) else outputs
                self._write_row({"step": step, "train_loss": float(loss), **values})
        if (self.maps_every_n_steps > 0 and step % self.maps_every_n_steps == 0 and trainer.is_global_zero
                and hasattr(model, "return_maps") and hasattr(pl_module, "panel_frames")):
            self._save_maps(trainer, pl_module, model, batch, step)

    @torch.no_grad()
    def _save_maps(self, trainer, pl_module, model, batch, step: int) -> None:
        previous = model.return_maps
        model.return_maps = True
        try:
            pl_module.panel_frames(batch)
            maps = dict(getattr(model, "last_maps", {}) or {})
        finally:
            model.return_maps = previous
        links = maps.get("wormhole_link_counts")
        if links is None:
            return
        weights = maps.get("temporal_weights")
        image = attention_map_image(links[0], None if weights is None else weights[0], f"step {step}")
        save_png(image, self.media_dir / f"attention_step{step:06d}.png")
        log_image(trainer, "media/attention", image, step)
