"""Tiny LM checkpoints in this framework's format, for tests and smoke runs (no training, no Lightning)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from akira.models.lm import Transformer, lm_preset


def save_lm_checkpoint(model: Transformer, path: str | Path) -> Path:
    """Write ``model`` as LanguageModelTask would: state_dict keys prefixed ``model.``, model_config, model_class."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "model_config": dataclasses.asdict(model.config),
                "model_class": f"{type(model).__module__}.{type(model).__qualname__}"}, path)
    return path


def tiny_lm_checkpoint(path: str | Path, seed: int = 0, **overrides) -> Path:
    """A random-init `lm_preset("tiny", **overrides)` model saved at ``path`` (seeded)."""
    torch.manual_seed(seed)
    return save_lm_checkpoint(Transformer(lm_preset("tiny", **overrides)), path)
