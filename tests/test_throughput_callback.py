"""The throughput callback times training only: validation and checkpoint saves stop its clock."""
from __future__ import annotations

import time

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from akira.callbacks.throughput import Throughput, peak_flops


class _Tiny(pl.LightningModule):
    throughput_unit = "items"

    def __init__(self, val_sleep: float):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.val_sleep = val_sleep

    def items_per_batch(self, batch) -> int:
        return int(batch[0].shape[0])

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        time.sleep(self.val_sleep)

    def on_save_checkpoint(self, checkpoint) -> None:
        time.sleep(self.val_sleep)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_validation_and_checkpoint_time_stay_out_of_the_rate(tmp_path):
    data = DataLoader(TensorDataset(torch.randn(64, 4)), batch_size=4)
    meter = Throughput(log_every_n_steps=4, warmup_steps=0)
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=5, save_top_k=-1)
    trainer = pl.Trainer(max_steps=16, val_check_interval=4, limit_val_batches=1, num_sanity_val_steps=0,
                         callbacks=[meter, ckpt], logger=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path)
    sleep = 0.25
    t0 = time.perf_counter()
    trainer.fit(_Tiny(sleep), data, data)
    wall = time.perf_counter() - t0
    paused = sleep * (4 + 3)                     # 4 validations (steps 4, 8, 12, 16) and 3 saves (5, 10, 15)
    assert wall > paused
    assert meter._total_items == 16 * 4
    assert meter._total_seconds < 0.5 * paused   # the sleeps are not in it (they were, all of them, before)


def test_peak_flops_table_knows_h100_and_h200():
    assert peak_flops("NVIDIA H200") == peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12 and peak_flops("NVIDIA H200 NVL") == 835e12
    assert peak_flops("Tesla T4") is None
