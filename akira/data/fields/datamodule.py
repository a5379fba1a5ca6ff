"""``FieldsDataModule``: clips of the synthetic 2D fields for next-frame prediction.

Every batch is a plain float32 tensor ``(B, history + horizon, grid, grid)``.

* train, ``mode="batch"``: an infinite stream of independent streams (``FieldClipStream``): sample ``i``
  is a pure function of ``(seed, i)``: start time ``t0 ~ U{0, ..., train_t_max - L}`` and, if
  ``vary_params``, parameters from the ``train`` ranges. All training frames have ``t < train_t_max``.
  Sharded over ranks and DataLoader workers; resumable through ``state_dict`` / ``load_state_dict``.
* train, ``mode="online"``: the reference's protocol: one stream, default parameters, batch size 1, the
  clip starting at ``t = 0, 1, 2, ...`` in order (one optimiser step per frame), up to ``train_t_max``.
* val: ``val_streams`` held-out streams (``heldout`` parameters, ``t0 ~ U[train_t_max, train_t_max + 5000)``,
  seed ``seed + 1``).
* test: two dataloaders, ``test_protocols = ("unseen", "reference")``: ``unseen`` = ``test_streams``
  held-out streams like val with seed ``seed + 2``; ``reference`` = the seed's protocol: default
  parameters, ``reference_clips`` consecutive clips starting at ``reference_t0, reference_t0 + 1, ...``.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Subset

from akira.data.fields.datasets import (
    FieldClipSet,
    FieldClipStream,
    collate_batch,
    heldout_clip_set,
    reference_clip_set,
)
from akira.data.fields.params import check_pattern

MODES = ("batch", "online")
EVAL_WINDOW = 5000  # held-out start times are drawn from [train_t_max, train_t_max + EVAL_WINDOW)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"data.{name}: must be an integer >= {minimum}, got {value!r}")


class _CountingLoader(DataLoader):
    """DataLoader counting the batches it hands out in this process (``state_dict`` without a trainer)."""

    def __iter__(self):
        for batch in super().__iter__():
            self.batches_yielded = getattr(self, "batches_yielded", 0) + 1
            yield batch


class FieldsDataModule(pl.LightningDataModule):
    """Synthetic-field clips (protocols in the module docstring). Batches: ``(B, L, H, W)`` float32."""

    def __init__(
        self,
        pattern: str = "blob",
        grid: int = 32,
        history: int = 8,
        horizon: int = 10,
        batch_size: int = 32,
        num_workers: int = 0,
        mode: str = "batch",
        train_t_max: int = 10000,
        reference_t0: int = 10000,
        val_streams: int = 64,
        test_streams: int = 128,
        switch_period: int = 50,
        eval_batch_size: int | None = None,
        seed: int = 0,
        vary_params: bool = True,
        reference_clips: int = 101,
    ) -> None:
        super().__init__()
        check_pattern(pattern)
        if mode not in MODES:
            raise ValueError(f"data.mode: unknown mode {mode!r}; allowed: {', '.join(MODES)}")
        for name, value, minimum in (
            ("grid", grid, 8),
            ("history", history, 1),
            ("horizon", horizon, 1),
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
            ("train_t_max", train_t_max, 1),
            ("reference_t0", reference_t0, 0),
            ("val_streams", val_streams, 1),
            ("test_streams", test_streams, 1),
            ("switch_period", switch_period, 1),
            ("reference_clips", reference_clips, 1),
        ):
            _check_int(name, value, minimum)
        if eval_batch_size is not None:
            _check_int("eval_batch_size", eval_batch_size, 1)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"data.seed: must be an integer, got {seed!r}")
        if not isinstance(vary_params, bool):
            raise ValueError(f"data.vary_params: must be true or false, got {vary_params!r}")
        if history + horizon > train_t_max:
            raise ValueError(
                f"data.history: history + horizon = {history + horizon} must be <= "
                f"data.train_t_max = {train_t_max}"
            )
        if reference_t0 < train_t_max:
            raise ValueError(
                f"data.reference_t0: must be >= data.train_t_max = {train_t_max} (reference clips start after "
                f"the training time steps; periodic patterns still repeat training frames there: the seed's "
                f"protocol, not held-out data), got {reference_t0}"
            )
        self.save_hyperparameters()
        self.pattern, self.grid, self.history, self.horizon = pattern, grid, history, horizon
        self.clip_len = history + horizon
        self.batch_size, self.num_workers, self.mode = batch_size, num_workers, mode
        self.train_t_max, self.reference_t0 = train_t_max, reference_t0
        self.val_streams, self.test_streams, self.reference_clips = val_streams, test_streams, reference_clips
        self.switch_period, self.seed, self.vary_params = switch_period, seed, vary_params
        self.eval_batch_size = eval_batch_size or batch_size
        self.test_protocols: tuple[str, ...] = ("unseen", "reference")
        self._start_index = 0
        self._loader: _CountingLoader | None = None
        self._eval: dict[str, FieldClipSet] | None = None

    # ----------------------------------------------------------------------------------------- data sets
    @property
    def train_batch_size(self) -> int:
        """Clips per training batch and rank: ``batch_size``, or 1 in online mode."""
        return 1 if self.mode == "online" else self.batch_size

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is not None:
            return trainer.global_rank, trainer.world_size
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def train_dataset(self, rank: int | None = None, world_size: int | None = None) -> FieldClipStream:
        """The training stream from the current data position (rank/world from the trainer unless given)."""
        r, w = self._rank_world()
        online = self.mode == "online"
        return FieldClipStream(
            self.pattern,
            self.grid,
            self.clip_len,
            self.train_batch_size,
            self.train_t_max,
            seed=self.seed,
            vary_params=self.vary_params and not online,
            switch_period=self.switch_period,
            sequential=online,
            start_index=self._start_index,
            rank=r if rank is None else rank,
            world_size=w if world_size is None else world_size,
        )

    def eval_sets(self) -> dict[str, FieldClipSet]:
        """``{"val", "unseen", "reference"}`` clip sets (built once; cheap: times and parameters only)."""
        if self._eval is None:
            lo, hi = self.train_t_max, self.train_t_max + EVAL_WINDOW
            common = (self.pattern, self.grid, self.clip_len)
            self._eval = {
                "val": heldout_clip_set(*common, self.val_streams, lo, hi, self.seed + 1, self.switch_period),
                "unseen": heldout_clip_set(
                    *common, self.test_streams, lo, hi, self.seed + 2, self.switch_period
                ),
                "reference": reference_clip_set(
                    *common, self.reference_clips, self.reference_t0, self.switch_period
                ),
            }
        return self._eval

    def setup(self, stage: str | None = None) -> None:
        self.eval_sets()

    # -------------------------------------------------------------------------------------- dataloaders
    def train_dataloader(self) -> DataLoader:
        self._loader = _CountingLoader(
            self.train_dataset(),
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=False,
        )
        return self._loader

    def _eval_loader(self, name: str) -> DataLoader:
        """Under DDP rank ``r`` of ``W`` evaluates the contiguous shard ``[r*n/W, (r+1)*n/W)`` of the set (no
        padding, every clip once); the metrics are sums that torchmetrics adds up across ranks."""
        dataset = self.eval_sets()[name]
        rank, world = self._rank_world()
        if world > 1:
            n = len(dataset)
            dataset = Subset(dataset, range(rank * n // world, (rank + 1) * n // world))
        return DataLoader(
            dataset,
            batch_size=self.eval_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=collate_batch,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> list[DataLoader]:
        """``[unseen, reference]`` in the order of ``self.test_protocols``."""
        return [self._eval_loader(name) for name in self.test_protocols]

    # ---------------------------------------------------------------------------------- resume position
    def state_dict(self) -> dict[str, Any]:
        """``{"samples_seen": global_step * accumulate_grad_batches * train_batch_size * world_size}``.

        Without a trainer: the start position plus the samples handed out by the last train dataloader
        in this process (times the world size).
        """
        trainer = self.trainer
        if trainer is not None:
            steps = trainer.global_step * trainer.accumulate_grad_batches
            return {"samples_seen": int(steps * self.train_batch_size * trainer.world_size)}
        batches = getattr(self._loader, "batches_yielded", 0) if self._loader is not None else 0
        return {"samples_seen": self._start_index + batches * self.train_batch_size * self._rank_world()[1]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """The next ``train_dataloader`` starts at global sample ``state_dict["samples_seen"]``."""
        seen = state_dict.get("samples_seen")
        if isinstance(seen, bool) or not isinstance(seen, int) or seen < 0:
            raise ValueError(f"samples_seen: must be an integer >= 0 in the datamodule state, got {seen!r}")
        self._start_index = seen
        self._loader = None
