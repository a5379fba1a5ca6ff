"""Neighbor attention: every pixel attends to its 3x3 neighbourhood in the last ``L + 1`` frames.

REFERENCE §1.5, fixed and vectorised. Keys/values: the features of the 9 pixels around the query pixel
(replicate padding at the border, centre included) at frames ``t - L .. t`` (``L = layer_range``; the
current frame included). One ``F.unfold`` gathers the 9 offsets of every frame (no loop over offsets);
:func:`windowed_attention` scores all query frames at once. Keys and values are the band's ``k*k``
patches; the band embedding is folded into the maps (:class:`QKVO`).

- ``norm="joint"`` (default): one softmax over the ``9 (L + 1)`` keys;
- ``norm="per_frame"``: the reference's rule, a softmax over the 9 keys of each frame, then the mean over
  the ``L + 1`` frames.
"""

from __future__ import annotations

from torch import Tensor, nn

from akira.models.fields.spectral.features import unfold_same
from akira.models.fields.spectral.qkvo import QKVO
from akira.models.fields.spectral.window import windowed_attention

__all__ = ["NeighborAttention", "unfold3x3"]


def unfold3x3(feat: Tensor) -> Tensor:
    """``(B, S, C, H, W)`` -> 3x3 neighbourhoods ``(B, H*W, S, 9, C)`` with replicate padding."""
    b, s, d, h, w = feat.shape
    cols = unfold_same(feat.reshape(b * s, d, h, w), 3)  # (B*S, C*9, H, W)
    return cols.view(b, s, d, 9, h * w).permute(0, 4, 1, 3, 2)


class NeighborAttention(nn.Module):
    """3x3 x ``(L + 1)`` frames attention; see the module docstring."""

    def __init__(
        self, dim: int, attn_dim: int, layer_range: int, norm: str = "joint", block: int | None = None
    ):
        super().__init__()
        self.layer_range, self.norm = layer_range, norm
        self.block = block
        self.proj = QKVO(dim, attn_dim)

    @property
    def frames(self) -> int:
        """Number of frames attended (``L + 1``)."""
        return self.layer_range + 1

    def forward(self, q_patch: Tensor, kv_patch: Tensor, w: Tensor, c: Tensor):
        """Attend.

        Args:
            q_patch: ``(B, N, S, P)`` band patches (``P = k*k``) of the ``S`` query frames (``N = H*W``).
            kv_patch: ``(B, S + L, P, H, W)`` patches of those frames preceded by ``L`` earlier frames.
            w, c: the band embedding ``(D, P)``, ``(D,)``.

        Returns:
            the patch-space context ``pbar (B, N, S, P)`` (the attention output is
            ``self.proj.read_out(pbar, w, c)``, ``(B, N, S, D)``) and the entropy ``(B, N)`` of the last query
            step's weights over its ``9 (L+1)`` keys.
        """
        aq, bq = self.proj.query_map(w, c)
        pbar, ent, _ = windowed_attention(
            q_patch @ aq + bq, unfold3x3(kv_patch), self.frames, norm=self.norm, block=self.block
        )
        return pbar, ent

    def extra_repr(self) -> str:
        return f"layer_range={self.layer_range}, norm={self.norm!r}"
