"""Bias-free query/key/value/output projections shared by the three attention types (as the reference).

The attention of the reference is ``W_o sum_j w_j W_v f_j`` with ``w = softmax_j(<W_q f_q, W_k f_j> / sqrt(A))``
on band features ``f = W p + c`` (:class:`~akira.models.fields.spectral.features.BandEmbedding`). With
``M = W_q^T W_k`` and ``R = W_o W_v`` (``D x D``) this is computed exactly in the ``k*k``-dim patch space:

- score: ``<W_q f_q, W_k f_j> / sqrt(A) = <qt, p_j> + const(q)`` with ``qt = p_q Aq + aq``,
  ``Aq = W^T M W / sqrt(A)``, ``aq = c^T M W / sqrt(A)``; the constant ``<W_q f_q, W_k c>/sqrt(A)`` is the
  same for every key of a query, so softmax, top-k and the weights are unchanged by dropping it;
- read-out: ``W_o W_v sum_j w_j f_j = (sum_j w_j p_j) Bo + bo`` with ``Bo = W^T R^T``, ``bo = c R^T``
  (``sum_j w_j = 1``).
The small ``k*k x k*k`` / ``k*k x D`` maps are rebuilt from the parameters on every call, so all of
``W_q, W_k, W_v, W_o, W, c`` receive gradient.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

__all__ = ["QKVO"]


class QKVO(nn.Module):
    """``W_q, W_k, W_v: D -> A`` and ``W_o: A -> D``, all bias-free; see the module docstring."""

    def __init__(self, dim: int, attn_dim: int):
        super().__init__()
        self.attn_dim = attn_dim
        self.w_q = nn.Linear(dim, attn_dim, bias=False)
        self.w_k = nn.Linear(dim, attn_dim, bias=False)
        self.w_v = nn.Linear(dim, attn_dim, bias=False)
        self.w_o = nn.Linear(attn_dim, dim, bias=False)

    def query_map(self, w: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """``(Aq (k*k, k*k), aq (k*k,))`` for band embedding ``w (D, k*k)``, ``c (D,)``."""
        m = self.w_q.weight.t() @ self.w_k.weight  # (D, D): f_row @ m = (W_q f)^T W_k
        mw = (m @ w) * (1.0 / math.sqrt(self.attn_dim))  # (D, k*k)
        return w.t() @ mw, c @ mw

    def out_map(self, w: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """``(Bo (k*k, D), bo (D,))``: ``W_o W_v (W pbar + c) = pbar Bo + bo``."""
        r = self.w_o.weight @ self.w_v.weight  # (D, D)
        return w.t() @ r.t(), c @ r.t()

    def read_out(self, pbar: Tensor, w: Tensor, c: Tensor) -> Tensor:
        """Attention output ``(..., D)`` from the patch-space context ``pbar (..., k*k)``."""
        bo, co = self.out_map(w, c)
        return pbar @ bo + co
