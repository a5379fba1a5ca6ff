"""Causal sliding-window attention over time, shared by the temporal and the neighbor attention.

Query step ``s`` (``0 <= s < S``) attends to the keys of the ``window`` time steps ``s .. s + window - 1``
of a key sequence of length ``S + window - 1`` (so the last key step of query ``s`` is its own frame).
Each key step holds ``G`` keys (1 for temporal, 9 neighbourhood offsets for neighbor attention). Keys are
also the values (the key projection is folded into the query by the caller).

All query steps run at once: queries are cut into blocks of ``C`` steps and each block is scored against
the ``C + window - 1`` key steps it can see with one batched matmul; a static ``(C, C + window - 1)``
band mask removes keys outside each query's window, so causality holds by construction.
The "age" of a key step is how many frames it lies before the query (0 = the query's own frame).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["window_ages", "windowed_attention"]

_AGE_CACHE: dict[tuple[int, int, str], Tensor] = {}
# Default query steps per block on CPUs: the spectral2d fast preset trained 15% faster with 2 than with the
# window (8 / 4) on a 2-core CPU (torch 2.13, 16 x 18-frame clips, 32x32; 1310 vs 1484 ms per step, median of 16
# interleaved steps), where smaller blocks copy less; GPUs keep the window (few, large batched matmuls).
CPU_BLOCK = 2


def window_ages(block: int, window: int, device: torch.device) -> Tensor:
    """``(C, C + window - 1)`` long: age of key step ``j`` for query ``i`` of a block, -1 outside the window."""
    key = (block, window, str(device))
    if key not in _AGE_CACHE:
        i = torch.arange(block, device=device)[:, None]
        j = torch.arange(block + window - 1, device=device)[None, :]
        rel = j - i
        age = (window - 1) - rel
        _AGE_CACHE[key] = torch.where((rel >= 0) & (rel < window), age, torch.full_like(age, -1))
    return _AGE_CACHE[key]


def windowed_attention(
    q: Tensor,
    kv: Tensor,
    window: int,
    *,
    top_k: int | None = None,
    log_gamma: float = 0.0,
    recency: str = "after",
    norm: str = "joint",
    block: int | None = None,
    want_map: bool = False,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Causal windowed attention.

    Args:
        q: ``(B, N, S, D)`` queries (already in key space and scaled).
        kv: ``(B, N, S + window - 1, G, D)`` keys = values, chronological.
        window: key steps per query (the query's own step is the last).
        top_k: keep only the ``top_k`` best of the ``window * G`` keys (None: plain softmax).
        log_gamma: recency log-prior per step of age: ``age * log_gamma`` is added to the logits.
        recency: ``"after"`` (reference: select on raw scores, then add the prior) or ``"before"``.
        norm: ``"joint"`` (one softmax over all ``window * G`` keys) or ``"per_frame"`` (softmax over the
            ``G`` keys of each step, then the mean over the ``window`` steps; the reference's neighbor rule).
        block: query steps per block (default ``window`` on GPUs, ``CPU_BLOCK`` on CPUs).
        want_map: also return the weights of the last query step.

    Returns:
        ``out (B, N, S, D)``, the entropy ``(B, N)`` of the last query step's weights (statistics are taken
        on the last step only, to keep them cheap), and (if ``want_map``) the last query's weights
        ``(B, N, window, G)`` oldest step first.
    """
    b, n, s, d = q.shape
    length, g = kv.shape[2], kv.shape[3]
    if length != s + window - 1:
        raise ValueError(f"kv has {length} time steps; expected S + window - 1 = {s + window - 1}")
    if block is None:
        block = CPU_BLOCK if q.device.type == "cpu" else window
    c = min(s, block)
    nb = math.ceil(s / c)
    span = c + window - 1
    if nb == 1:
        kvb = kv.reshape(b, n, 1, span * g, d)
        qb = q.unsqueeze(2)
    else:
        pad = nb * c - s
        qb = torch.nn.functional.pad(q, (0, 0, 0, pad)).view(b, n, nb, c, d)
        kvp = torch.nn.functional.pad(kv, (0, 0, 0, 0, 0, pad))
        # (B, N, nb, G, D, span) -> (B, N, nb, span, G, D) -> (B, N, nb, span * G, D)
        kvb = kvp.unfold(2, span, c).permute(0, 1, 2, 5, 3, 4).reshape(b, n, nb, span * g, d)
    scores = qb @ kvb.transpose(-1, -2)  # (B, N, nb, C, span * G)
    age = window_ages(c, window, q.device)
    valid_t = age >= 0  # (C, span)
    if norm == "per_frame":
        w = torch.softmax(scores.view(b, n, nb, c, span, g), dim=-1)
        w = (w * (valid_t.to(w.dtype) / window)[:, :, None]).view(b, n, nb, c, span * g)
    elif norm == "joint":
        age_g = age.repeat_interleave(g, dim=1)  # key layout: step-major, G-minor
        valid = age_g >= 0
        prior = age_g.clamp_min(0).to(scores.dtype) * log_gamma
        logits = scores.masked_fill(~valid, float("-inf"))
        if top_k is not None and top_k < window * g:
            if recency == "before":
                logits = logits + prior
            keep = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device)
            keep.scatter_(-1, logits.topk(top_k, dim=-1).indices, True)
            logits = logits.masked_fill(~keep, float("-inf"))
            if recency == "after":
                logits = logits + prior
        else:
            logits = logits + prior
        w = torch.softmax(logits, dim=-1)
    else:
        raise ValueError(f"norm must be 'joint' or 'per_frame'; got {norm!r}")
    out = (w @ kvb).reshape(b, n, nb * c, d)[:, :, :s]
    r = (s - 1) - (nb - 1) * c  # row of the last query in the last block
    w_last = w[:, :, nb - 1, r].detach()  # (B, N, span * G)
    entropy = -torch.special.xlogy(w_last, w_last).sum(-1)
    wmap = w_last.view(b, n, span, g)[:, :, r : r + window] if want_map else None
    return out, entropy, wmap
