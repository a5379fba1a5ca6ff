"""Per-band AdamW parameter groups, warmup + cosine schedule, group bookkeeping (pure torch, no Lightning).

Groups are named ``band_0`` ... ``band_{n-1}`` and ``shared``; each is split by weight decay into ``<name>``
(matrices, decayed) and ``<name>_no_decay`` (norms, biases, embeddings), so every group name is unique and
learning rates log as ``lr/<name>``. Which parameters belong to a band is declared by the model's modules
through a ``band_parameters() -> {local parameter name: band index}`` method (band MLPs and norms,
dense_split hidden groups); everything else (embeddings, attention, wormhole, final norm, head) is shared.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

V1_BAND_LRS: tuple[float, ...] = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)  # seed 026 v1 table
SHARED_LR = 3e-4

LrTable = str | Sequence[float] | Mapping[str, float] | None


def band_parameter_map(model: nn.Module) -> dict[int, int]:
    """``id(parameter) -> band index`` for every parameter a module declares through ``band_parameters()``."""
    out: dict[int, int] = {}
    for module in model.modules():
        fn = getattr(module, "band_parameters", None)
        if callable(fn):
            for local, band in fn().items():
                out[id(module.get_parameter(local))] = int(band)
    return out


def resolve_band_lrs(lr_table: LrTable, n_bands: int, shared_lr: float = SHARED_LR) -> tuple[list[float], float]:
    """(per-band peak LRs, shared peak LR) from a table spec.

    ``None``: the seed v1 table for a band model, nothing for a model without bands; ``"v1"``: the v1 table;
    ``"uniform"``: every band at ``shared_lr``; a list of ``n_bands`` floats; or a dict ``{"band_i": lr}`` for
    every band (plus an optional ``"shared"``).
    """
    if lr_table is None:
        lr_table = "v1" if n_bands else "uniform"
    if isinstance(lr_table, str):
        if lr_table == "uniform":
            return [float(shared_lr)] * n_bands, float(shared_lr)
        if lr_table != "v1":
            raise ValueError(f"optim.band_lrs: expected 'v1', 'uniform', a list or a dict, got {lr_table!r}")
        lr_table = list(V1_BAND_LRS)
    if n_bands == 0:
        raise ValueError("optim.band_lrs: the model has no bands (dense MLP); use null or 'uniform' for it, "
                         "or a band / dense_split model for per-band learning rates")
    if isinstance(lr_table, Mapping):
        expected = {f"band_{i}" for i in range(n_bands)}
        keys = set(lr_table) - {"shared"}
        if keys != expected:
            raise ValueError(f"optim.band_lrs: needs keys band_0..band_{n_bands - 1} (+ optional 'shared'), "
                             f"got {sorted(lr_table)}")
        shared_lr = lr_table.get("shared", shared_lr)
        lrs = [lr_table[f"band_{i}"] for i in range(n_bands)]
    else:
        lrs = list(lr_table)
        if len(lrs) != n_bands:
            raise ValueError(f"optim.band_lrs: {len(lrs)} learning rates for a model with {n_bands} bands")
    lrs = [float(x) for x in lrs]
    if min(lrs + [float(shared_lr)]) < 0 or not all(math.isfinite(x) for x in lrs):
        raise ValueError(f"optim.band_lrs: learning rates must be finite and >= 0, got {lrs} / shared {shared_lr}")
    return lrs, float(shared_lr)


def _no_decay_ids(model: nn.Module) -> set[int]:
    """Embeddings, every parameter of fewer than 2 dims (norms, biases), and what a module declares through
    ``no_decay_parameters() -> local names`` (biases stored as matrices, such as the wormhole's per-band b_qkv)."""
    ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    ids |= {id(p) for p in model.parameters() if p.ndim < 2}
    for module in model.modules():
        fn = getattr(module, "no_decay_parameters", None)
        if callable(fn):
            ids |= {id(module.get_parameter(name)) for name in fn()}
    return ids


def build_param_groups(model: nn.Module, lr_table: LrTable = None, shared_lr: float = SHARED_LR,
                       weight_decay: float = 0.01) -> list[dict]:
    """Named AdamW param groups: ``band_i`` / ``band_i_no_decay`` / ``shared`` / ``shared_no_decay``.

    Each dict has ``name``, ``params``, ``param_names``, ``lr`` = ``initial_lr`` = ``peak_lr`` (the group's
    peak), ``weight_decay`` (0 for norms, biases and embeddings; an untied LM head is a matrix and decays),
    ``band`` (index or None) and ``base`` (the name without ``_no_decay``). Every trainable parameter is in
    exactly one group; empty groups are dropped. Works on a compiled model or any module containing the LM.
    """
    if weight_decay < 0:
        raise ValueError(f"optim.weight_decay: must be >= 0, got {weight_decay}")
    band_of = band_parameter_map(model)
    n_bands = (max(band_of.values()) + 1) if band_of else 0
    lrs, shared = resolve_band_lrs(lr_table, n_bands, shared_lr)
    no_decay = _no_decay_ids(model)
    buckets: dict[tuple[int | None, bool], list[tuple[str, nn.Parameter]]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            buckets.setdefault((band_of.get(id(p)), id(p) not in no_decay), []).append((name, p))
    groups = []
    for band in [*range(n_bands), None]:
        base = "shared" if band is None else f"band_{band}"
        lr = shared if band is None else lrs[band]
        for decay in (True, False):
            members = buckets.get((band, decay), [])
            if not members:
                continue
            groups.append({"name": base if decay else f"{base}_no_decay", "base": base, "band": band,
                           "params": [p for _, p in members], "param_names": [n for n, _ in members],
                           "lr": lr, "initial_lr": lr, "peak_lr": lr,
                           "weight_decay": float(weight_decay) if decay else 0.0})
    return groups


def param_group_summary(groups: Iterable[Mapping]) -> dict[str, int]:
    """``{group name: number of scalar parameters}`` (for run.json), plus ``total``."""
    out = {g["name"]: int(sum(p.numel() for p in g["params"])) for g in groups}
    out["total"] = sum(out.values())
    return out


def param_group_members(groups: Iterable[Mapping]) -> dict[str, list[str]]:
    """``{group name: [parameter names]}`` (for run.json)."""
    return {g["name"]: list(g.get("param_names", [])) for g in groups}


def build_optimizer(groups: list[dict], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                    fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW over the named groups (each carries its own lr and weight_decay); ``fused=None`` -> fused when
    every parameter is on CUDA."""
    if fused is None:
        fused = all(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=groups[0]["lr"] if groups else 1e-3, betas=tuple(betas), eps=eps,
                             fused=bool(fused))


def warmup_cosine_lambda(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.1) -> float:
    """LR multiplier at optimizer step ``step``: linear 0 -> 1 over ``warmup_steps`` (step / warmup), then a
    cosine from 1 to ``min_lr_ratio`` at ``total_steps``; ``min_lr_ratio`` afterwards."""
    if warmup_steps > 0 and step < warmup_steps:
        return step / warmup_steps
    if total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine:
    """Picklable `warmup_cosine_lambda` for `LambdaLR` (its attributes go into the scheduler's state_dict)."""

    def __init__(self, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.1):
        if total_steps < 1:
            raise ValueError(f"optim.total_steps: must be >= 1, got {total_steps}")
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"optim.warmup_steps: must be in [0, total_steps={total_steps}], got {warmup_steps}")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"optim.min_lr_ratio: must be in [0, 1], got {min_lr_ratio}")
        self.warmup_steps, self.total_steps, self.min_lr_ratio = int(warmup_steps), int(total_steps), min_lr_ratio

    def __call__(self, step: int) -> float:
        return warmup_cosine_lambda(step, self.warmup_steps, self.total_steps, self.min_lr_ratio)


def build_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                    min_lr_ratio: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    """`LambdaLR` stepping once per optimizer step; every group scales its own ``initial_lr`` (its peak)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps, min_lr_ratio))


@torch.no_grad()
def group_norms(groups: Iterable[Mapping], what: str = "grad") -> dict[str, float]:
    """L2 norm of the gradients (``what="grad"``) or weights (``"weight"``) per base group (``band_i``,
    ``shared``; the decay / no-decay halves combined), with one host sync. Missing gradients are skipped."""
    if what not in ("grad", "weight"):
        raise ValueError(f"what: must be 'grad' or 'weight', got {what!r}")
    names, sums = [], []
    for g in groups:
        tensors = [t for t in ((p.grad if what == "grad" else p) for p in g["params"]) if t is not None]
        if tensors:
            names.append(g.get("base", g["name"]))
            sums.append(torch.stack([torch.linalg.vector_norm(t.float()) for t in tensors]).square().sum())
    out: dict[str, float] = {}
    if sums:
        for name, v in zip(names, torch.stack([x.to(sums[0].device) for x in sums]).tolist()):
            out[name] = out.get(name, 0.0) + v
    return {k: math.sqrt(v) for k, v in out.items()}
