"""Cross-band wormhole (seed v1 semantics, made causal and vectorised over all band pairs).

For every target band i and source band j != i (the *pairs*):
    q = W_q,i b_i (c),  k = W_k,j b_j (c),  v = W_v,j b_j (2c)
    A = softmax(q k^T / sqrt(c)) over causal positions (optionally only the top_k causal scores per query)
    o_ij = W_o,i (A v) (d_i);  g_ij = sigmoid(W_g,i [b_i ; o_ij]);  g_ij <- g_ij * 1[g_ij > threshold]
    b_i <- b_i + (1 / n_src(i)) * sum_j g_ij * o_ij          (simultaneous update; n_src = bands - 1 for "all")

Vectorisation: one block-structured projection gives q, k, v of all bands. The pairs are laid out as R x nb
"slots" (r, i): target i, source j = (i + offset_r) % nb (R = 6 offsets for "all", every slot a pair; a subset such
as "complementary" computes all slots and masks the unused ones), so the per-slot k, v are R rolls of the band
axis and q is broadcast: no gather, so no scatter-add in the backward. The slots are the heads of a single
`scaled_dot_product_attention(is_causal=True)` call (on Hopper and later, cuDNN's kernel takes q/k of dim c and v of
dim 2c as they are; elsewhere q, k are zero-padded to 2c for the flash kernels, which need equal head dims; the
scale stays 1/sqrt(c); ``attention="triton"`` uses `pair_attention_kernel` instead, opt-in). The gate's o-part is folded into one matrix per band,
W_gf,i = W_g,i^o W_o,i (exact in real arithmetic), and b_o's share of the gate into the gate's bias. The gated sum
over sources (``gate``): ``torch`` forms every slot's output and gate pre-activation with one matmul as a
`(B, S, R, 2 D)` tensor, then the gate, threshold and sum are elementwise ops plus one reduction (fused by
torch.compile); ``triton`` (`wormhole_gate_kernel`) keeps that tensor on chip (H200, full arm: 46.7 vs 48.5 ms per
step, 2.2 GB less peak memory; benchmarks/RESULTS.md); ``auto`` (default) is ``triton`` on CUDA where Triton is
installed, else ``torch``.
Parameters are the seed's: per layer sum_i (2 d_i^2 + 98 d_i + 64) = 137,664 for the seed widths with c = 16
(biases included).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import pair_attention_kernel, triton_support, wormhole_gate_kernel
from .band import band_layout
from .config import WORMHOLE_ATTENTION, WORMHOLE_GATE


def wormhole_pairs(n_bands: int, mode: str = "all") -> list[tuple[int, int]]:
    """Ordered (target, source) pairs. ``complementary`` (7 bands): 0<->6, 1<->5, 2<->4, and band 3 <-> all."""
    if mode == "all":
        return [(i, j) for i in range(n_bands) for j in range(n_bands) if i != j]
    if mode == "complementary":
        if n_bands != 7:
            raise ValueError(f"model.wormhole_pairs: 'complementary' needs 7 bands, got {n_bands}")
        sym = [(0, 6), (1, 5), (2, 4)] + [(3, j) for j in range(7) if j != 3]
        return sorted({p for a, b in sym for p in ((a, b), (b, a))})
    raise ValueError(f"model.wormhole_pairs: must be 'all' or 'complementary', got {mode!r}")


class CrossBandWormhole(nn.Module):
    """Gated cross-band attention between contiguous bands: `x (B, S, D) -> delta (B, S, D)` (add to x).

    Parameters (all in the optimizer's ``shared`` group, as in the seed):
    ``w_qkv`` (4c, D): rows [q | k | v] and columns by band, i.e. W_q,i / W_k,i / W_v,i side by side;
    ``b_qkv`` (nb, 4c); ``w_o`` (D, 2c): rows by target band (W_o,i stacked); ``b_o`` (D,);
    ``w_g`` per band (d_i, 2 d_i) = [W_g,i^b | W_g,i^o]; ``b_g`` (D,).
    """

    def __init__(self, widths: tuple[int, ...], cross_dim: int, pairs: str = "all", top_k: int | None = None,
                 threshold: float = 0.5, bias: bool = True, attention: str = "sdpa", gate: str = "auto"):
        super().__init__()
        if attention not in WORMHOLE_ATTENTION:
            raise ValueError(f"model.wormhole_attention: must be one of {WORMHOLE_ATTENTION}, got {attention!r}")
        if attention == "triton" and not pair_attention_kernel.available():
            raise ValueError("model.wormhole_attention=triton: needs Triton (it ships with CUDA builds of torch)")
        if gate not in WORMHOLE_GATE:
            raise ValueError(f"model.wormhole_gate: must be one of {WORMHOLE_GATE}, got {gate!r}")
        if gate == "triton" and not wormhole_gate_kernel.available():
            raise ValueError("model.wormhole_gate=triton: needs Triton (it ships with CUDA builds of torch)")
        self.widths, self.c, self.top_k, self.threshold = tuple(widths), cross_dim, top_k, threshold
        self.attention, self.gate = attention, gate
        nb, d, c = len(widths), sum(widths), cross_dim
        self.pairs = wormhole_pairs(nb, pairs)
        self.w_qkv = nn.Parameter(torch.empty(4 * c, d))
        self.w_o = nn.Parameter(torch.empty(d, 2 * c))
        self.w_g = nn.ParameterList([nn.Parameter(torch.empty(w, 2 * w)) for w in widths])
        self.b_qkv = nn.Parameter(torch.zeros(nb, 4 * c)) if bias else None
        self.b_o = nn.Parameter(torch.zeros(d)) if bias else None
        self.b_g = nn.Parameter(torch.zeros(d)) if bias else None

        lay = band_layout(widths)
        onehot = F.one_hot(lay["band_of"], nb).T.float()                       # (nb, D)
        self.register_buffer("onehot", onehot, persistent=False)
        # slots (r, i): target i, source (i + offsets[r]) % nb; only offsets that occur are kept (6 for "all")
        off = sorted({(j - i) % nb for i, j in self.pairs})
        self.offsets = off
        slot_on = torch.zeros(len(off), nb, dtype=torch.int32)
        for i, j in self.pairs:
            slot_on[off.index((j - i) % nb), i] = 1
        self.register_buffer("pair_mask", slot_on.float()[:, lay["band_of"]], persistent=False)  # (R, D)
        n_src = slot_on.sum(0).float()[lay["band_of"]]
        self.register_buffer("inv_n_src", torch.where(n_src > 0, 1.0 / n_src.clamp(min=1), 0.0),
                             persistent=False)                                  # (D,)
        # flattened per-band w_g (d_i, 2 d_i) -> positions in the packed (D, 2D) [W_g^b block-diag | W_g^o block-diag]
        g_idx = []
        for i, w in enumerate(widths):
            s0 = int(sum(widths[:i]))
            r, col = torch.meshgrid(torch.arange(w), torch.arange(2 * w), indexing="ij")
            dest_col = torch.where(col < w, s0 + col, d + s0 + col - w)
            g_idx.append(((s0 + r) * 2 * d + dest_col).flatten())
        self.register_buffer("g_index", torch.cat(g_idx), persistent=False)
        # the Triton gate's band table, launch groups and slot flags (`wormhole_gate_kernel.band_table`)
        table, groups = wormhole_gate_kernel.band_table(self.widths, slot_on)
        self.register_buffer("gate_table", table, persistent=False)
        self.register_buffer("slot_on", slot_on.flatten(), persistent=False)         # (R * nb,) in slot order
        self.gate_groups = [v for g in groups for v in g]

    def no_decay_parameters(self) -> set[str]:
        """Biases stored as a matrix (`b_qkv`, (nb, 4c)): no weight decay, as every bias (`akira.tasks.optim`)."""
        return {"b_qkv"} if self.b_qkv is not None else set()

    def reset_parameters(self, std: float, out_std: float) -> None:
        nn.init.normal_(self.w_qkv, 0.0, std)
        nn.init.normal_(self.w_o, 0.0, out_std)
        for w in self.w_g:
            nn.init.normal_(w, 0.0, std)
        for b in (self.b_qkv, self.b_o, self.b_g):
            if b is not None:
                nn.init.zeros_(b)

    # ---------------------------------------------------------------------------------------------------
    def band_weights(self, i: int) -> dict[str, torch.Tensor | None]:
        """Band i's seed-style matrices (for reference checks): W_q (c, d_i), W_k, W_v (2c, d_i), W_o (d_i, 2c),
        W_g (d_i, 2 d_i) and biases."""
        s = sum(self.widths[:i])
        sl, c = slice(s, s + self.widths[i]), self.c
        b = self.b_qkv[i] if self.b_qkv is not None else None
        return {"wq": self.w_qkv[:c, sl], "wk": self.w_qkv[c:2 * c, sl], "wv": self.w_qkv[2 * c:, sl],
                "bq": None if b is None else b[:c], "bk": None if b is None else b[c:2 * c],
                "bv": None if b is None else b[2 * c:], "wo": self.w_o[sl], "bo": None if self.b_o is None
                else self.b_o[sl], "wg": self.w_g[i], "bg": None if self.b_g is None else self.b_g[sl]}

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q, k (B, P, S, c), v (B, P, S, 2c) -> (B, P, S, 2c), causal over S (top_k if set)."""
        c, s = q.shape[-1], q.shape[-2]
        if self.top_k is None or self.top_k >= s:
            if self.attention == "triton":  # opt-in kernel for small, unequal head dims
                return pair_attention_kernel.attention(q, k, v, c ** -0.5)
            if q.is_cuda and torch.cuda.get_device_capability(q.device) >= (9, 0):
                # cuDNN's kernel (Hopper on) takes q/k dim c != v dim 2c: H200 fwd+bwd 1.83 vs 2.15 ms padded
                return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=c ** -0.5)
            pad = v.shape[-1] - c  # the flash kernels need equal head dims
            return F.scaled_dot_product_attention(F.pad(q, (0, pad)), F.pad(k, (0, pad)), v, is_causal=True,
                                                  scale=c ** -0.5)
        scores = (q @ k.transpose(-2, -1)).float() * c ** -0.5                      # (B, P, S, S)
        future = torch.ones(s, s, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))                          # causal mask BEFORE top-k
        keep = torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, scores.topk(self.top_k, -1).indices, True)
        probs = scores.masked_fill(~keep, float("-inf")).softmax(-1)
        return probs.to(v.dtype) @ v

    def _slots(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """qkv (B, S, nb, 4c) -> q, k (B, H, S, c), v (B, H, S, 2c) for the H = R * nb slots, in order (r, i)."""
        c, rows = self.c, len(self.offsets)
        q, kv = qkv[..., :c], qkv[..., c:]
        kv = torch.stack([kv.roll(-o, 2) for o in self.offsets], 2).flatten(2, 3).transpose(1, 2)  # (B, H, S, 3c)
        q = q.unsqueeze(2).expand(-1, -1, rows, -1, -1).flatten(2, 3).transpose(1, 2)
        return q, kv[..., :c], kv[..., c:]

    def _gate_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(W_g^b (D, D) block-diagonal, W_gf (D, 2c) = W_g,i^o W_o,i per band, gate bias b_g + W_g^o b_o)."""
        d = sum(self.widths)
        w_flat = torch.cat([w.flatten() for w in self.w_g])                          # weights only, cheap
        w_g = w_flat.new_zeros(d * 2 * d).index_copy(0, self.g_index, w_flat).view(d, 2 * d)  # [b | o]
        w_gb, w_go = w_g[:, :d], w_g[:, d:]
        b_g = self.b_g
        if self.b_o is not None:
            b_g = (b_g if b_g is not None else 0.0) + w_go @ self.b_o
        return w_gb, w_go @ self.w_o, b_g

    def _gated_sum(self, u: torch.Tensor, gate_x: torch.Tensor, w_gf: torch.Tensor) -> torch.Tensor:
        """u (B, H, S, 2c), gate_x (B, S, D) -> (B, S, D): every slot's output and gate as a (B, S, R, 2D) tensor."""
        b, _, s, _ = u.shape
        rows, d = len(self.offsets), gate_x.shape[-1]
        block = self.onehot.T.unsqueeze(-1)                                          # (D, nb, 1)
        w = torch.cat([(self.w_o.unsqueeze(1) * block).flatten(1), (w_gf.unsqueeze(1) * block).flatten(1)], 0)
        og = F.linear(u.transpose(1, 2).reshape(b, s, rows, -1), w)                  # (B, S, R, 2D)
        o = og[..., :d]
        if self.b_o is not None:
            o = o + self.b_o.to(o.dtype)
        g = torch.sigmoid(og[..., d:] + gate_x.unsqueeze(2))
        g = g * (g > self.threshold)
        return (g * o * self.pair_mask.to(o.dtype)).sum(2) * self.inv_n_src.to(o.dtype)

    def _triton_gate(self, u: torch.Tensor) -> bool:
        """Whether the gated sum runs as the Triton op: ``auto`` on CUDA where Triton is installed; ``triton`` also
        on CPU under the Triton interpreter (tests)."""
        if self.gate == "auto":
            return u.is_cuda and wormhole_gate_kernel.available()
        return self.gate == "triton" and (u.is_cuda or triton_support.interpreted())

    def _gated_sum_triton(self, u: torch.Tensor, gate_x: torch.Tensor, w_gf: torch.Tensor) -> torch.Tensor:
        """`_gated_sum` by `wormhole_gate_kernel` (weights in u's dtype; o and gp accumulate in fp32)."""
        return wormhole_gate_kernel.wormhole_gate(
            u, gate_x.to(u.dtype), self.w_o.to(u.dtype), w_gf.to(u.dtype), self.b_o, self.slot_on, self.gate_table,
            self.gate_groups, float(self.threshold))

    def slot_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What the gated sum takes: every slot's attention output u (B, H, S, 2c), the gate's x-part gate_x (B, S, D)
        and the folded W_gf (D, 2c)."""
        b, s, d = x.shape
        nb, c = len(self.widths), self.c
        w_qkv = (self.w_qkv.unsqueeze(0) * self.onehot.unsqueeze(1)).reshape(nb * 4 * c, d)   # block rows
        b_qkv = self.b_qkv.reshape(-1) if self.b_qkv is not None else None
        qkv = F.linear(x, w_qkv, b_qkv).view(b, s, nb, 4 * c)
        u = self._attend(*self._slots(qkv))                                         # (B, H, S, 2c)
        w_gb, w_gf, b_g = self._gate_weights()
        return u, F.linear(x, w_gb, b_g), w_gf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, S, D) -> wormhole update (B, S, D), to be added to x."""
        u, gate_x, w_gf = self.slot_inputs(x)
        if self._triton_gate(u):
            return self._gated_sum_triton(u, gate_x, w_gf)
        return self._gated_sum(u, gate_x, w_gf)
