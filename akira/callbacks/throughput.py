"""Training throughput (`throughput/<unit>_per_sec`, all devices together, and
`throughput/<unit>_per_sec_per_device`, for scaling efficiency under DDP) and, where FLOPs are known, MFU.

The task provides `throughput_unit` ("frames" or "tokens") and `items_per_batch(batch)`; optionally
`flops_per_item()` for MFU against `PEAK_BF16_FLOPS` (dense, no sparsity). The clock stops from the start of an
in-training validation, and from a checkpoint save, until the next training batch starts: those are not
training throughput.
"""
from __future__ import annotations

import time

import pytorch_lightning as pl
import torch

# Dense bf16 tensor-core peak FLOP/s (datasheet, no sparsity). Lightning's own table lacks the H200.
PEAK_BF16_FLOPS = {
    "H200 NVL": 835e12, "H200": 989e12, "H100 SXM": 989e12, "H100 80GB HBM3": 989e12, "H100 PCIe": 756e12, "H100 NVL": 835e12,
    "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12, "RTX 4090": 165e12,
}


def peak_flops(device_name: str) -> float | None:
    """Peak dense bf16 FLOP/s for a CUDA device name, longest matching key first."""
    for key in sorted(PEAK_BF16_FLOPS, key=len, reverse=True):
        if key.lower() in device_name.lower():
            return PEAK_BF16_FLOPS[key]
    return None


class Throughput(pl.Callback):
    """Logs items/s every `log_every_n_steps` steps and keeps the run's mean after `warmup_steps`."""

    def __init__(self, log_every_n_steps: int = 10, warmup_steps: int = 2):
        self.log_every_n_steps = max(1, int(log_every_n_steps))
        self.warmup_steps = int(warmup_steps)
        self._t0 = None
        self._window_items = 0
        self._total_items = 0
        self._total_seconds = 0.0
        self._paused_at = None   # perf_counter() when validation or a checkpoint save stopped the clock
        self.world_size = 1

    def _sync(self, trainer: pl.Trainer) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)

    def _pause(self, trainer) -> None:
        if self._t0 is not None and self._paused_at is None:
            self._sync(trainer)
            self._paused_at = time.perf_counter()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._pause(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self._pause(trainer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._t0 is None:
            self._sync(trainer)
            self._t0 = time.perf_counter()
        elif self._paused_at is not None:  # the time since the pause is not training
            self._sync(trainer)
            self._t0 += time.perf_counter() - self._paused_at
        self._paused_at = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.world_size = trainer.world_size
        items = int(pl_module.items_per_batch(batch)) * trainer.world_size
        step = trainer.global_step
        if step <= self.warmup_steps:  # compile/cudnn warm-up stays out of the numbers
            self._t0 = None
            return
        self._window_items += items
        if step % self.log_every_n_steps == 0:
            self._sync(trainer)
            now = time.perf_counter()
            seconds = now - self._t0
            self._total_items += self._window_items
            self._total_seconds += seconds
            rate = self._window_items / max(seconds, 1e-9)
            unit = getattr(pl_module, "throughput_unit", "items")
            metrics = {f"throughput/{unit}_per_sec": rate, f"throughput/{unit}_per_sec_per_device": rate / self.world_size}
            flops = getattr(pl_module, "flops_per_item", None)
            if callable(flops) and trainer.strategy.root_device.type == "cuda":
                peak = peak_flops(torch.cuda.get_device_name(trainer.strategy.root_device))
                if peak:
                    metrics["throughput/mfu"] = rate * flops() / (peak * trainer.world_size)
            pl_module.log_dict(metrics, on_step=True, on_epoch=False)
            self._window_items, self._t0 = 0, now

    def on_train_end(self, trainer, pl_module) -> None:
        """Count the last partial window too, so short runs still report a rate."""
        if self._t0 is not None and self._window_items:
            self._sync(trainer)
            end = self._paused_at if self._paused_at is not None else time.perf_counter()
            self._total_items += self._window_items
            self._total_seconds += end - self._t0
            self._window_items = 0

    def mean_rate(self) -> float | None:
        """Mean items/s over all logged windows (None before the first window)."""
        return self._total_items / self._total_seconds if self._total_seconds > 0 else None
