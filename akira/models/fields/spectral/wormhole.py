"""Wormhole attention: sparse links from every pixel of frame t to similar pixels anywhere in past frames.

REFERENCE §1.6, fixed. For a query pixel at frame ``t`` the candidates are all key tokens of the eligible
past frames ``t - k`` with ``k_min <= k <= T - 1`` (``k_min = 1`` when frame t-1 is eligible; the
reference's mask order made ``k_min = 2``, i.e. t-1 never eligible). Frames outside that range are never
scored, so the causal mask is applied *before* the top-k and no link slot is wasted.

Similarity features (our choice; the reference's similarity band was a frozen random affine map of one
scalar, REFERENCE §1.6): the descriptor of a pixel is

    u = [ sqrt(1 - lam) * e ; sqrt(lam) * g ]     (|u| <= 1, similarity = <u_q, u_k> in [-1, 1])

- ``e``: the 3x3 patch of the similarity band's scalar around the pixel (replicate padding) minus its own
  mean, scaled by ``1 / sqrt(|e|^2 + eps^2)`` (``eps = 0.01``): the local *shape*; flat patches get a
  near-zero descriptor and so no links.
- ``g``: a learned projection ``normalize(W_s f)`` of the similarity band's features ``f = W p + c``
  (``W_s: D -> sim_dim``; computed as ``(W_s W) p + W_s c``).
- ``lam = learned_weight`` (0: patches only, no learned part).

Selection: the ``top_k`` most similar candidates per query (``torch.topk`` on similarities computed under
``no_grad`` in chunks of at most ``chunk_size`` (query, candidate) entries, so the ``(queries x
candidates)`` matrix is never materialised at once); links with similarity ``< threshold`` are dropped
(never more than ``top_k`` links per query).
Gradient path: the selected similarities are recomputed differentiably and enter the attention logits as an
additive bias, ``logit = <W_q v_t, W_k v_k> / sqrt(A) + s * sim`` with a learned scale ``s``, so ``W_s``, the
similarity band's embedding and ``s`` all receive gradient. Values (and keys of the QK term) are read from
the value band (with ``read_next=True`` from the frame after the linked one, "what happened next"; off by
default as in the reference), as ``k*k`` patches with the band embedding folded in (:class:`QKVO`).
Queries with no link output zero.

Token budget: when ``H*W > max_key_tokens`` the key grid of every past frame (raw descriptor parts and
value patches) is adaptive-average-pooled to at most ``max_key_tokens`` tokens (queries stay at full
resolution). This bounds the compute (``queries x key_frames x tokens``); the chunks bound the memory.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from akira.models.fields.spectral.features import unfold_same
from akira.models.fields.spectral.qkvo import QKVO

__all__ = ["WormholeAttention", "pooled_grid"]

_PATCH_EPS = 0.01
_CPU_CHUNK = 2**22


def pooled_grid(h: int, w: int, max_tokens: int) -> tuple[int, int]:
    """Key grid ``(h', w')`` of a past frame: ``(h, w)`` if ``h*w <= max_tokens``, else pooled by the
    smallest integer factor ``f`` with ``ceil(h/f) * ceil(w/f) <= max_tokens``."""
    f = 1
    while math.ceil(h / f) * math.ceil(w / f) > max_tokens:
        f += 1
    return math.ceil(h / f), math.ceil(w / f)


class WormholeAttention(nn.Module):
    """Sparse top-k attention to similar pixels of past frames; see the module docstring.

    Args:
        dim, attn_dim: ``D`` and ``A``.
        window: ``T``, frames in the context (the current one included).
        top_k: max links per query (reference ``max_connections``).
        threshold: minimum similarity of a link, in [-1, 1].
        min_distance: ``k_min``, the nearest eligible past frame is ``t - k_min`` (``1 <= k_min <= T - 1``).
        read_next: read values from the frame after the linked one.
        sim_dim: size of the learned similarity projection; learned_weight: ``lam`` in [0, 1].
        chunk_size: max (query, candidate) similarity entries per chunk (4 bytes each in fp32).
        max_key_tokens: key tokens per past frame before pooling kicks in.
        sim_scale_init: initial value of the learned similarity-logit scale ``s``.
    """

    def __init__(
        self,
        dim: int,
        attn_dim: int,
        window: int,
        top_k: int,
        threshold: float,
        min_distance: int = 1,
        read_next: bool = False,
        sim_dim: int = 8,
        learned_weight: float = 0.5,
        chunk_size: int = 2**26,
        max_key_tokens: int = 1024,
        sim_scale_init: float = 10.0,
    ):
        super().__init__()
        self.window, self.top_k, self.threshold = window, top_k, float(threshold)
        self.min_distance, self.read_next = min_distance, bool(read_next)
        self.learned_weight = float(learned_weight)
        self.chunk_size, self.max_key_tokens = chunk_size, max_key_tokens
        self.proj = QKVO(dim, attn_dim)
        self.sim_proj = nn.Linear(dim, sim_dim, bias=False) if self.learned_weight > 0 else None
        self.sim_scale = nn.Parameter(torch.tensor(float(sim_scale_init)))

    @property
    def key_frames(self) -> int:
        """Number of eligible past frames ``T - k_min``."""
        return self.window - self.min_distance

    @property
    def desc_dim(self) -> int:
        """Descriptor size: 9 patch entries (+ ``sim_dim``)."""
        return 9 + (self.sim_proj.out_features if self.sim_proj is not None else 0)

    # ----------------------------------------------------------------------------- per-frame features
    def _raw_parts(
        self, sim_scalar: Tensor, sim_patch: Tensor | None, w: Tensor | None, c: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """Unnormalised descriptor parts on the grid: ``e (B*S, 9, H, W)``, ``g (B*S, sim_dim, H, W)``."""
        b, s, h, wd = sim_scalar.shape
        if sim_patch is not None and sim_patch.shape[2] == 9:
            e = sim_patch.reshape(b * s, 9, h, wd)
        else:
            e = unfold_same(sim_scalar.reshape(b * s, 1, h, wd), 3)
        e = e - e.mean(dim=1, keepdim=True)
        g = None
        if self.sim_proj is not None:
            if sim_patch is None or w is None or c is None:
                raise ValueError(
                    "the similarity band's patches and embedding are required when learned_weight > 0"
                )
            kk = sim_patch.shape[2]
            gw = self.sim_proj.weight @ w  # (sim_dim, k*k)
            g = F.conv2d(sim_patch.reshape(b * s, kk, h, wd), gw[:, :, None, None], self.sim_proj.weight @ c)
        return e, g

    def _combine(self, e: Tensor, g: Tensor | None, b: int, s: int) -> Tensor:
        """Normalise and concatenate parts ``(B*S, C, h, w)`` -> descriptors ``(B, S, h*w, Du)``."""
        e = e.float()
        e = e * torch.rsqrt(e.pow(2).sum(1, keepdim=True) + _PATCH_EPS**2)
        parts = [math.sqrt(1.0 - self.learned_weight) * e]
        if g is not None:
            parts.append(math.sqrt(self.learned_weight) * F.normalize(g.float(), dim=1, eps=1e-6))
        u = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        return u.flatten(2).transpose(1, 2).reshape(b, s, -1, u.shape[1])

    def descriptors(
        self,
        sim_scalar: Tensor,
        sim_patch: Tensor | None = None,
        w: Tensor | None = None,
        c: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Query and (pooled) key descriptors of every frame.

        Args:
            sim_scalar: ``(B, S, H, W)`` similarity-band values; sim_patch: ``(B, S, k*k, H, W)`` its patches;
            w, c: its embedding ``(D, k*k)``, ``(D,)`` (patches and embedding needed if ``learned_weight > 0``).

        Returns:
            ``uq (B, S, H*W, Du)`` (full resolution) and ``uk (B, S, P, Du)`` (``P`` pooled key tokens).
        """
        b, s, h, wd = sim_scalar.shape
        e, g = self._raw_parts(sim_scalar, sim_patch, w, c)
        uq = self._combine(e, g, b, s)
        ph, pw = pooled_grid(h, wd, self.max_key_tokens)
        if (ph, pw) == (h, wd):
            return uq, uq
        e_p = F.adaptive_avg_pool2d(e, (ph, pw))
        g_p = None if g is None else F.adaptive_avg_pool2d(g, (ph, pw))
        return uq, self._combine(e_p, g_p, b, s)

    def pool_values(self, value_patch: Tensor) -> Tensor:
        """``value_patch (B, S, k*k, H, W)`` -> value tokens ``(B, S, P, k*k)`` (pooled if over budget)."""
        b, s, kk, h, w = value_patch.shape
        ph, pw = pooled_grid(h, w, self.max_key_tokens)
        x = value_patch.reshape(b * s, kk, h, w)
        if (ph, pw) != (h, w):
            x = F.adaptive_avg_pool2d(x, (ph, pw))
        return x.flatten(2).transpose(1, 2).reshape(b, s, ph * pw, kk)

    # ----------------------------------------------------------------------------- attention
    def _chunking(self, frames: int, n: int, cand: int, cpu: bool = False) -> tuple[int, int]:
        """``(frames per chunk, query pixels per chunk)`` with ``frames * pixels * cand <= chunk_size``.

        On CPU the chunk is further capped at ``2^22`` entries (16 MiB), which stays in cache and measured
        about twice as fast there; GPUs prefer few large chunks.
        """
        budget = min(self.chunk_size, _CPU_CHUNK) if cpu else self.chunk_size
        if n * cand <= budget:
            return max(1, min(frames, budget // (n * cand))), n
        return 1, max(1, budget // cand)

    @torch.no_grad()
    def select(self, uq: Tensor, uk: Tensor) -> Tensor:
        """Top-k candidate indices ``(B, Sq, N, k)`` into each query's window of ``key_frames * P`` tokens.

        ``uq (B, Sq, N, Du)``; ``uk (B, Sq + T - 1, P, Du)``. Window of query ``j``: key frames
        ``j .. j + key_frames - 1`` (token ``i`` of the window is frame ``i // P``, position ``i % P``).
        """
        b, sq, n, du = uq.shape
        p, we = uk.shape[2], self.key_frames
        top = min(self.top_k, we * p)
        keys = uk[:, : sq + we - 1].unfold(1, we, 1)  # (B, Sq, P, Du, We)
        keys = keys.permute(0, 1, 3, 4, 2).reshape(b * sq, du, we * p)  # (B*Sq, Du, We*P)
        qs = uq.reshape(b * sq, n, du)
        g, rows = self._chunking(b * sq, n, we * p, cpu=uq.device.type == "cpu")
        idx = torch.empty(b * sq, n, top, dtype=torch.long, device=uq.device)
        for f0 in range(0, b * sq, g):  # chunks over (batch, time) frames and query pixels bound the memory
            for n0 in range(0, n, rows):
                sim = torch.bmm(qs[f0 : f0 + g, n0 : n0 + rows], keys[f0 : f0 + g])
                idx[f0 : f0 + g, n0 : n0 + rows] = sim.topk(top, dim=-1, sorted=False).indices  # order is irrelevant
        return idx.view(b, sq, n, top)

    def forward(
        self,
        q_patch: Tensor,
        uq: Tensor,
        uk: Tensor,
        vk: Tensor,
        w: Tensor,
        c: Tensor,
        want_map: bool = False,
    ):
        """Attend.

        Args:
            q_patch: ``(B, Sq, N, k*k)`` value-band patches of the query frames.
            uq: ``(B, Sq, N, Du)`` query descriptors.
            uk: ``(B, Sq + T - 1, P, Du)`` key descriptors; vk: ``(B, Sq + T - 1, P, k*k)`` value tokens
                (chronological; the last ``Sq`` frames are the query frames).
            w, c: the value band's embedding ``(D, k*k)``, ``(D,)``.

        Returns:
            the patch-space context ``pbar (B, Sq, N, k*k)`` and the gate ``(B, Sq, N, 1)`` (1 where the
            query has a link); the attention output is ``gate * self.proj.read_out(pbar, w, c)``
            ``(B, Sq, N, D)`` (zero without links). Then a dict of statistics, and (if ``want_map``) the link
            count of every pixel of the last query frame ``(B, N)``.
        """
        b, sq, n, du = uq.shape
        sk, p, kk = uk.shape[1], uk.shape[2], vk.shape[3]
        if sk != sq + self.window - 1:
            raise ValueError(f"uk has {sk} frames; expected Sq + T - 1 = {sq + self.window - 1}")
        idx = self.select(uq, uk)
        top = idx.shape[-1]
        frame = idx.div(p, rounding_mode="floor") + torch.arange(sq, device=idx.device)[None, :, None, None]
        flat = (frame * p + idx.remainder(p)).view(b, -1, 1)  # into the (Sk*P) tokens
        uk_sel = uk.reshape(b, sk * p, du).gather(1, flat.expand(-1, -1, du)).view(b, sq, n, top, du)
        sim = (uq.unsqueeze(3) * uk_sel).sum(-1)  # (B, Sq, N, k), differentiable
        valid = sim.detach() >= self.threshold
        offset = p if self.read_next else 0
        v_sel = (
            vk.reshape(b, sk * p, kk).gather(1, (flat + offset).expand(-1, -1, kk)).view(b, sq, n, top, kk)
        )
        aq, bq = self.proj.query_map(w, c)
        logits = ((q_patch @ aq + bq).unsqueeze(3) * v_sel).sum(-1) + self.sim_scale * sim
        any_valid = valid.any(-1, keepdim=True)
        logits = logits.masked_fill(~valid, float("-inf")).masked_fill(~any_valid, 0.0)
        wts = torch.softmax(logits, dim=-1) * valid
        pbar = (wts.unsqueeze(-1) * v_sel).sum(-2)
        with torch.no_grad():
            links = valid.sum().float()
            frames = float(b * sq)
            stats = {
                "wormhole_links": links / frames,
                "wormhole_link_rate": links / (b * sq * n * top),
                "wormhole_positions_with_links": any_valid.sum().float() / frames,
                # NaN when there is no link (0 / 0); no host sync
                "wormhole_mean_similarity": (sim.detach() * valid).sum() / links,
            }
        link_map = valid[:, -1].sum(-1) if want_map else None
        return pbar, any_valid.to(pbar.dtype), stats, link_map

    def estimate_bytes(
        self, batch: int, h: int, w: int, n_query: int, dim: int, kk: int, elem: int = 4
    ) -> dict[str, int]:
        """Analytic activation bytes of one call (tensors kept for backward plus the transient chunk)."""
        n = h * w
        ph, pw = pooled_grid(h, w, self.max_key_tokens)
        p, we, du = ph * pw, self.key_frames, self.desc_dim
        sk = n_query + self.window - 1
        top = min(self.top_k, we * p)
        nq = batch * n_query * n
        g, rows = self._chunking(batch * n_query, n, we * p)
        chunk_queries = min(g, batch * n_query) * min(rows, n)
        return {
            "wormhole_descriptors": elem * (batch * sk * n * (du + 9) + batch * sk * p * (du + kk)),
            # the chunk of similarities plus as much again for topk's workspace
            "wormhole_similarity_chunk": 2 * elem * (chunk_queries * we * p)
            + elem * batch * n_query * we * p * du,
            "wormhole_links": elem * nq * top * (2 * du + 2 * kk + 8) + elem * nq * (dim + 2 * kk),
        }

    def extra_repr(self) -> str:
        return (
            f"window={self.window}, top_k={self.top_k}, threshold={self.threshold}, "
            f"min_distance={self.min_distance}, read_next={self.read_next}, "
            f"learned_weight={self.learned_weight}, chunk_size={self.chunk_size}, "
            f"max_key_tokens={self.max_key_tokens}"
        )
