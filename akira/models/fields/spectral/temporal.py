"""Temporal attention: every pixel attends to its own last ``T`` frames (REFERENCE §1.4, fixed).

Query: the pixel's feature at frame ``t``; keys/values: the same pixel's features at frames
``t - T + 1 .. t`` (the current frame included; age 0 = frame t). Score ``<W_q x_t, W_k x_tau>/sqrt(A)``
plus a recency log-prior ``age * log(gamma)`` (= ``log(gamma^age)``). Selection:

- ``selection="topk"``: keep the ``top_k`` keys per pixel; ``recency="after"`` selects on the raw scores
  and adds the prior afterwards (the reference), ``"before"`` adds the prior first;
- ``selection="softmax"``: softmax over all ``T`` keys (prior included).

All pixels and all time steps run at once (:func:`windowed_attention`); causal by construction. Keys and
values are the band's ``k*k`` patches; the band embedding is folded into the maps (:class:`QKVO`).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from akira.models.fields.spectral.qkvo import QKVO
from akira.models.fields.spectral.window import windowed_attention

__all__ = ["TemporalAttention"]


class TemporalAttention(nn.Module):
    """Per-pixel attention over the last ``window`` frames; see the module docstring.

    Args:
        dim: feature size ``D``; attn_dim: ``A``; window: ``T`` (frames attended, current included).
        top_k: keys kept with ``selection="topk"`` (``1 <= top_k <= T``).
        decay_rate: ``gamma`` in (0, 1]; selection: ``"topk" | "softmax"``; recency: ``"after" | "before"``.
    """

    def __init__(
        self,
        dim: int,
        attn_dim: int,
        window: int,
        top_k: int,
        decay_rate: float = 0.95,
        selection: str = "topk",
        recency: str = "after",
        block: int | None = None,
    ):
        super().__init__()
        self.window, self.top_k, self.decay_rate = window, top_k, decay_rate
        self.selection, self.recency = selection, recency
        self.block = block
        self.proj = QKVO(dim, attn_dim)

    def forward(self, q_patch: Tensor, kv_patch: Tensor, w: Tensor, c: Tensor, want_map: bool = False):
        """Attend.

        Args:
            q_patch: ``(B, N, S, P)`` band patches (``P = k*k``) of the ``S`` query frames.
            kv_patch: ``(B, N, S + T - 1, P)`` patches of those frames preceded by ``T - 1`` earlier frames.
            w, c: the band embedding ``(D, P)``, ``(D,)``.

        Returns:
            the patch-space context ``pbar (B, N, S, P)`` (the attention output is
            ``self.proj.read_out(pbar, w, c)``, ``(B, N, S, D)``), the entropy of the last query step's
            weights ``(B, N)``, and the last query's weights ``(B, N, T)`` (oldest first) or None.
        """
        aq, bq = self.proj.query_map(w, c)
        top_k = self.top_k if self.selection == "topk" else None
        pbar, ent, wmap = windowed_attention(
            q_patch @ aq + bq,
            kv_patch.unsqueeze(3),
            self.window,
            top_k=top_k,
            log_gamma=math.log(self.decay_rate),
            recency=self.recency,
            block=self.block,
            want_map=want_map,
        )
        return pbar, ent, None if wmap is None else wmap[..., 0]

    def extra_repr(self) -> str:
        return (
            f"window={self.window}, top_k={self.top_k}, decay_rate={self.decay_rate}, "
            f"selection={self.selection!r}, recency={self.recency!r}"
        )
