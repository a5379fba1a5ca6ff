"""`configure_optimizers` shared by the tasks: named param groups, Adam/AdamW, warmup + constant/cosine."""
from __future__ import annotations

from typing import Any

import torch

from akira.tasks.optim import WarmupCosine, build_param_groups


def lr_lambda(warmup_steps: int, total_steps: int, schedule: str, min_lr_ratio: float):
    """Step -> LR multiplier: linear warmup from 0, then constant or cosine to `min_lr_ratio`."""
    if schedule == "constant":
        return lambda step: step / warmup_steps if warmup_steps > 0 and step < warmup_steps else 1.0
    return WarmupCosine(warmup_steps, total_steps, min_lr_ratio)


def configure_optimizers(model: torch.nn.Module, optim: dict[str, Any], total_steps: int):
    """Lightning `configure_optimizers` result; LRs log as `lr/<group name>` (scheduler name `lr`)."""
    shared_lr = optim.get("shared_lr")
    shared_lr = float(optim.get("lr", 1e-3) if shared_lr is None else shared_lr)
    groups = build_param_groups(model, lr_table=optim.get("band_lrs"), shared_lr=shared_lr,
                                weight_decay=float(optim.get("weight_decay", 0.0)))
    if not groups:
        return None
    on_cuda = all(p.is_cuda for g in groups for p in g["params"])
    fused = optim.get("fused")
    cls = torch.optim.AdamW if optim.get("name", "adamw") == "adamw" else torch.optim.Adam
    opt = cls(groups, lr=groups[0]["lr"], betas=tuple(optim.get("betas", (0.9, 0.999))),
              eps=float(optim.get("eps", 1e-8)), fused=bool(on_cuda if fused is None else fused))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(
        int(optim.get("warmup_steps", 0)), int(total_steps), str(optim.get("schedule", "constant")),
        float(optim.get("min_lr_ratio", 0.1))))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "name": "lr"}}


def resume_schedule(checkpoint: dict, optim: dict[str, Any], total_steps: int) -> None:
    """On resume, the run's own schedule settings (`trainer.max_steps`, warmup, min ratio) replace the ones saved
    in the checkpoint's `LambdaLR` state (which would otherwise win: a run extended to more steps kept its old
    cosine length and sat at the minimum LR), with a warning when they differ."""
    from pytorch_lightning.utilities import rank_zero_warn

    want = {"warmup_steps": int(optim.get("warmup_steps", 0)), "total_steps": int(total_steps),
            "min_lr_ratio": float(optim.get("min_lr_ratio", 0.1))}
    for sched in checkpoint.get("lr_schedulers", []):
        for state in sched.get("lr_lambdas", []):
            if isinstance(state, dict) and "total_steps" in state:
                old = {k: state.get(k) for k in want}
                if old != want:
                    rank_zero_warn(f"resuming with schedule {want} instead of the checkpoint's {old}: the LR "
                                   f"follows the new one from here on")
                state.update(want)


def clip_gradients(module, optimizer, gradient_clip_val, gradient_clip_algorithm) -> None:
    """Gradient clipping that also works with fused optimizers under bf16/fp32.

    Lightning's AMP plugin refuses to clip for optimizers that unscale internally (fused Adam/AdamW),
    because of fp16 grad scaling. bf16 and fp32 have no scaler, so clipping the gradients directly is
    exact; fp16 keeps Lightning's path.
    """
    if not gradient_clip_val:
        return
    if str(module.trainer.precision).startswith("16"):
        module.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
        return
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if gradient_clip_algorithm in (None, "norm"):
        torch.nn.utils.clip_grad_norm_(params, float(gradient_clip_val))
    else:
        torch.nn.utils.clip_grad_value_(params, float(gradient_clip_val))
