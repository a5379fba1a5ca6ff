"""NextFrameTask: next-frame prediction on 2D fields, reported beside trivial baselines.

Batches are clips `(B, history + horizon, H, W)`; the model sees the last `model.context_frames` of the
first `history` frames and predicts frame `history`. Validation and test also score copy-last and
linear extrapolation on the same batches, and autoregressive rollouts at `rollout_horizons`.
Test dataloader k is protocol `test_protocols[k]`: "unseen" logs under `test/`, others under
`test_<protocol>/`.
"""
from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanMetric, MeanSquaredError, MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from akira.tasks.configure import clip_gradients, configure_optimizers, resume_schedule


def _copy_last(frames: torch.Tensor) -> torch.Tensor:
    return frames[:, -1]


def _linear(frames: torch.Tensor) -> torch.Tensor:
    return (2 * frames[:, -1] - frames[:, -2]).clamp(0, 1)


class _EvalMetrics(nn.Module):
    """All metrics of one evaluation split (one protocol)."""

    def __init__(self, grid: int, horizons: Sequence[int]):
        super().__init__()
        kernel = min(11, grid - (1 - grid % 2))
        self.image = MetricCollection({
            "mse": MeanSquaredError(), "mae": MeanAbsoluteError(),
            "psnr": PeakSignalNoiseRatio(data_range=1.0),
            "ssim": StructuralSimilarityIndexMeasure(data_range=1.0, kernel_size=kernel),
        })
        self.mse_copy_last = MeanSquaredError()
        self.mse_linear = MeanSquaredError()
        self.horizons = list(horizons)
        self.rollout = nn.ModuleDict({f"h{h}": MeanMetric() for h in self.horizons})
        self.rollout_copy_last = nn.ModuleDict({f"h{h}": MeanMetric() for h in self.horizons})
        self.rollout_linear = nn.ModuleDict({f"h{h}": MeanMetric() for h in self.horizons})


class NextFrameTask(pl.LightningModule):
    throughput_unit = "frames"

    def __init__(self, model: nn.Module, history: int, grid: int, optim: dict | None = None,
                 rollout_horizons: Sequence[int] = (1, 5, 10), loss_on: str = "next",
                 total_steps: int = 1000, test_protocols: Sequence[str] = ("unseen", "reference")):
        super().__init__()
        self.model = model
        self.history = int(history)
        self.context = int(getattr(model, "context_frames", history))
        self.optim = dict(optim or {})
        self.loss_on = str(loss_on)
        self.total_steps = int(total_steps)
        self.horizons = sorted({int(h) for h in rollout_horizons})
        self.test_protocols = list(test_protocols)
        self.val_metrics = _EvalMetrics(grid, self.horizons)
        self.test_metrics = nn.ModuleList(_EvalMetrics(grid, self.horizons) for _ in self.test_protocols)
        self.save_hyperparameters(ignore=["model"])

    # ----------------------------------------------------------------- model calls
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames `(B, T, H, W)` -> next frame `(B, H, W)`."""
        return self.model(frames[:, -self.context:])

    def items_per_batch(self, batch: torch.Tensor) -> int:
        """Predicted frames per training batch (for throughput)."""
        if self.loss_on == "clip":
            return batch.shape[0] * (batch.shape[1] - self.context)
        return batch.shape[0]

    def clip_predictions(self, batch: torch.Tensor) -> torch.Tensor:
        """`loss_on=clip`: predictions `(B, L - context, H, W)` of frames context .. L-1 of clips `(B, L, H, W)`,
        each from exactly the `context` frames before it, as `forward` sees them at evaluation. A model whose
        `forward_sequence` reads only such a window (`windowed_sequence = True`) does it in one parallel pass;
        for any other (e.g. a recurrence whose state would start at frame 0 and see more than the context) the
        windows are cut out and batched through `forward`."""
        start = self.context - 1
        if getattr(self.model, "windowed_sequence", False):
            return self.model.forward_sequence(batch[:, :-1], start=start)   # output k: frame start + 1 + k
        b, _, h, w = batch.shape
        windows = batch[:, :-1].unfold(1, self.context, 1)                     # (B, n, H, W, context)
        n = windows.shape[1]
        return self.model(windows.permute(0, 1, 4, 2, 3).reshape(b * n, self.context, h, w)).view(b, n, h, w)

    def _train_loss(self, batch: torch.Tensor) -> torch.Tensor:
        if self.loss_on == "clip":   # every frame after the context is a target
            return F.mse_loss(self.clip_predictions(batch).float(), batch[:, self.context:].float())
        pred = self(batch[:, : self.history])
        return F.mse_loss(pred.float(), batch[:, self.history].float())

    # ----------------------------------------------------------------- steps
    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self._train_loss(batch)
        # sync_dist: under DDP the logged curve is the global batch's loss (one scalar all-reduce per step),
        # comparable with a one-device run at the same global batch
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, sync_dist=True)
        return loss

    def _evaluate(self, batch: torch.Tensor, metrics: _EvalMetrics) -> None:
        """Update `metrics` with one batch: the model, the two baselines and the rollouts."""
        past, target = batch[:, : self.history], batch[:, self.history].float().contiguous()
        pred = self(past).float().clamp(0, 1)
        metrics.image.update(pred[:, None], target[:, None].float())
        metrics.mse_copy_last.update(_copy_last(past).reshape(-1), target.reshape(-1))
        metrics.mse_linear.update(_linear(past).reshape(-1), target.reshape(-1))
        window, linear = past, past[:, -2:].float()
        for h in range(1, max(self.horizons) + 1):
            step = self(window).float().clamp(0, 1) if h > 1 else pred
            linear = torch.stack([linear[:, -1], _linear(linear)], dim=1)  # iterated 2x_t - x_{t-1}
            if f"h{h}" in metrics.rollout:
                truth = batch[:, self.history + h - 1].float()
                for name, guess in (("rollout", step), ("rollout_copy_last", past[:, -1].float()),
                                    ("rollout_linear", linear[:, -1])):
                    getattr(metrics, name)[f"h{h}"].update(F.mse_loss(guess, truth, reduction="none").mean((1, 2)))
            window = torch.cat([window[:, 1:], step[:, None].to(window.dtype)], dim=1)

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics)

    def test_step(self, batch: torch.Tensor, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, self.test_metrics[dataloader_idx])

    def _log_split(self, prefix: str, metrics: _EvalMetrics) -> None:
        values = {f"{prefix}/{k}": v for k, v in metrics.image.compute().items()}
        copy_last, linear = metrics.mse_copy_last.compute(), metrics.mse_linear.compute()
        values[f"{prefix}/mse_copy_last"] = copy_last
        values[f"{prefix}/mse_linear"] = linear
        values[f"{prefix}/skill"] = 1.0 - values[f"{prefix}/mse"] / copy_last.clamp_min(1e-12)
        values[f"{prefix}/skill_linear"] = 1.0 - values[f"{prefix}/mse"] / linear.clamp_min(1e-12)
        for key, metric in metrics.rollout.items():
            values[f"{prefix}/rollout_mse_{key}"] = metric.compute()
            values[f"{prefix}/rollout_mse_{key}_copy_last"] = metrics.rollout_copy_last[key].compute()
            values[f"{prefix}/rollout_mse_{key}_linear"] = metrics.rollout_linear[key].compute()
        if prefix == "val":  # val/loss (checkpoint monitor) = the MSE over every val clip of every rank
            self.log("val/loss", values[f"{prefix}/mse"], prog_bar=True, sync_dist=True)
        self.log_dict(values, add_dataloader_idx=False, sync_dist=True)
        for module in metrics.modules():
            if hasattr(module, "reset") and module is not metrics:
                module.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_split("val", self.val_metrics)

    def on_test_epoch_end(self) -> None:
        for protocol, metrics in zip(self.test_protocols, self.test_metrics):
            self._log_split("test" if protocol == "unseen" else f"test_{protocol}", metrics)

    @torch.no_grad()
    def panel_frames(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(current, target, prediction) `(H, W)` each, for the first clip of `batch`."""
        past = batch[:1, : self.history]
        pred = self(past).float().clamp(0, 1)
        return past[0, -1].float().cpu(), batch[0, self.history].float().cpu(), pred[0].cpu()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        resume_schedule(checkpoint, self.optim, self.total_steps)

    def configure_optimizers(self):
        return configure_optimizers(self.model, self.optim, self.total_steps)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        clip_gradients(self, optimizer, gradient_clip_val, gradient_clip_algorithm)
