"""Optimizer for models without per-band groups: one named group `shared`, LR logged as `lr/shared`."""
from __future__ import annotations

import math

import torch


def lr_multiplier(step: int, warmup_steps: int, total_steps: int, schedule: str, min_lr_ratio: float) -> float:
    """Linear warmup from 0 to 1 over `warmup_steps`, then constant or cosine down to `min_lr_ratio`."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def configure_adam(module: torch.nn.Module, optim: dict, total_steps: int):
    """Adam/AdamW over all trainable parameters with a step-wise LambdaLR named `lr`."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        return None
    name = str(optim.get("name", "adam"))
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    opt = cls([{"params": params, "name": "shared"}], lr=float(optim.get("lr", 1e-3)),
              betas=tuple(optim.get("betas", (0.9, 0.999))), eps=float(optim.get("eps", 1e-8)),
              weight_decay=float(optim.get("weight_decay", 0.0)))
    warmup, schedule = int(optim.get("warmup_steps", 0)), str(optim.get("schedule", "constant"))
    ratio = float(optim.get("min_lr_ratio", 0.1))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_multiplier(s, warmup, total_steps, schedule, ratio))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "name": "lr"}}
