"""Atomic checkpoint writes (akira.atomic: temp file in the same directory, fsync, os.replace)."""
from __future__ import annotations

from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from akira.atomic import atomic_open


class AtomicCheckpointIO(TorchCheckpointIO):
    """A crash or kill mid-write never leaves a truncated `.ckpt`: readers see the old or the new file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        with atomic_open(path, "wb") as f:
            torch.save(checkpoint, f)
