"""LM head + cross-entropy in chunks of tokens, without materialising the `(N, V)` logits.

`linear_cross_entropy(x, weight, targets)` equals `F.cross_entropy(F.linear(x, weight), targets,
ignore_index=-100)` (mean over the targets that are not ignored) in value and gradients. The forward pass
walks over chunks of `chunk` tokens: the chunk's logits (matmul in the compute dtype: the autocast dtype,
e.g. bf16, under autocast, as `nn.Linear` would), their log-sum-exp and loss in fp32, and at once the
gradients `dL/dx` (the chunk's rows) and `dL/dW` (accumulated in fp32); backward only scales them by the
incoming gradient. Peak memory of the head is `O(chunk * V)` instead of several `(N, V)` tensors (logits,
their fp32 copy, softmax, its gradient), and the three head matmuls (logits, dx, dW) still run once each.
"""
from __future__ import annotations

import torch
from torch import Tensor

IGNORE_INDEX = -100


class _LinearCrossEntropy(torch.autograd.Function):
    """x `(N, D)`, weight `(V, D)`, targets `(N,)` long -> mean loss (fp32 scalar; fp64 for fp64 inputs); see the module docstring."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, targets: Tensor, chunk: int, dtype: torch.dtype) -> Tensor:
        need_dx, need_dw = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        acc = torch.promote_types(dtype, torch.float32)  # loss / softmax precision: fp32 (fp64 for fp64 inputs)
        count = (targets != IGNORE_INDEX).sum().clamp_min(1).to(acc)
        w = weight.to(dtype)
        grad_x = torch.empty(x.shape, dtype=x.dtype, device=x.device) if need_dx else None
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_dw else None
        loss = torch.zeros((), dtype=acc, device=x.device)
        with torch.autocast(x.device.type, enabled=False):
            for s in range(0, x.shape[0], chunk):  # a handful of chunks per step: they bound the memory
                xc, tc = x[s:s + chunk].to(dtype), targets[s:s + chunk]
                logits = (xc @ w.t()).to(acc)                                       # (c, V)
                lse = torch.logsumexp(logits, dim=-1)
                valid = tc != IGNORE_INDEX
                tgt = torch.where(valid, tc, torch.zeros_like(tc))
                loss = loss + ((lse - logits.gather(1, tgt[:, None]).squeeze(1)) * valid).sum()
                if need_dx or need_dw:
                    g = logits.sub_(lse[:, None]).exp_()                            # softmax, in place
                    g[torch.arange(len(tc), device=g.device), tgt] -= 1.0
                    g = (g * valid[:, None]).to(dtype)                              # d(sum of losses)/d logits
                    if need_dx:
                        grad_x[s:s + chunk] = g @ w
                    if need_dw:
                        grad_w += (g.t() @ xc).to(acc)
        ctx.save_for_backward(grad_x, grad_w, count)
        ctx.weight_dtype = weight.dtype
        return loss / count

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        grad_x, grad_w, count = ctx.saved_tensors
        scale = grad_out.to(count.dtype) / count
        gx = None if grad_x is None else grad_x * scale.to(grad_x.dtype)
        gw = None if grad_w is None else (grad_w * scale).to(ctx.weight_dtype)
        return gx, gw, None, None, None


def linear_cross_entropy(x: Tensor, weight: Tensor, targets: Tensor, chunk: int = 4096) -> Tensor:
    """Mean cross-entropy of `x (..., D) @ weight (V, D).T` against `targets (...)` long (`-100` ignored).

    Same value and gradients as `F.cross_entropy(F.linear(x, weight).flatten(0, -2), targets.flatten(),
    ignore_index=-100)`, computed `chunk` tokens at a time (module docstring)."""
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"model.fused_loss_chunk: must be an integer >= 1, got {chunk!r}")
    if x.shape[:-1] != targets.shape:
        raise ValueError(f"x {tuple(x.shape)} and targets {tuple(targets.shape)}: expected (..., D) and (...)")
    device = x.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
    else:
        dtype = torch.promote_types(x.dtype, weight.dtype)
    return _LinearCrossEntropy.apply(x.reshape(-1, x.shape[-1]), weight, targets.reshape(-1), chunk, dtype)
