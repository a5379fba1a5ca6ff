"""AKIRA v1 band layer parts: contiguous channel bands, fused per-band LayerNorm, packed per-band MLP.

A "band" is a fixed contiguous slice of the residual stream's channels (seed v1: widths 128, 96, 80, 64, 64,
48, 32 of 512). Every band keeps its own `nn.Parameter`s (so each can sit in its own optimizer group with its
own learning rate); at forward time they are packed into one block-structured weight and applied with one
matmul per projection (``impl="loop"``, one matmul per band, is chosen only for wide expansions, where it
measured faster).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import band_mlp_kernel, triton_support


def band_layout(widths: tuple[int, ...] | list[int]) -> dict[str, torch.Tensor]:
    """Index tensors for bands of ``widths`` over D = sum(widths) channels.

    Returns ``band_of`` (D,) band id of each channel; ``gather`` (nb, wmax) channel index of each padded slot
    (D = the zero pad slot); ``mask`` (nb, wmax) 1.0 on real slots; ``flat`` (D,) position of each channel in
    the flattened padded layout (nb * wmax); ``widths`` (nb,) float.
    """
    w = torch.tensor(list(widths), dtype=torch.long)
    nb, d, wmax = len(w), int(w.sum()), int(w.max())
    starts = torch.cumsum(w, 0) - w
    band_of = torch.repeat_interleave(torch.arange(nb), w)
    pos = torch.arange(d) - starts[band_of]
    gather = torch.full((nb, wmax), d, dtype=torch.long)
    gather[band_of, pos] = torch.arange(d)
    return {"band_of": band_of, "gather": gather, "mask": (gather < d).float(), "flat": band_of * wmax + pos,
            "widths": w.float()}


def _pad_to_bands(x: torch.Tensor, gather: torch.Tensor) -> torch.Tensor:
    """x (..., D) -> (..., nb, wmax), zeros in the pad slots."""
    return F.pad(x, (0, 1))[..., gather]


class BandLayerNorm(nn.Module):
    """Independent LayerNorm on each band slice, in one vectorised pass: `(..., D) -> (..., D)`.

    The channels are viewed as `(..., C, g)` chunks with g = gcd of the widths (16 for the seed's bands), so each
    band is a run of whole chunks: per-chunk sums are a plain reduction over g, per-band sums gather the C chunk
    sums (a `(..., C)` tensor, not the activations) into a padded `(..., nb, chunks_max)` table, and the
    statistics are broadcast back per chunk. No index op touches a `(..., D)` tensor, so the backward needs no
    scatter-add over the activations. Statistics in fp32; the per-band affine Parameters are concatenated at
    forward time. Equal to ``cat([layer_norm(x_i) for each band])``.
    """

    def __init__(self, widths: tuple[int, ...], eps: float = 1e-5, bias: bool = True):
        super().__init__()
        self.widths, self.eps = tuple(widths), eps
        self.weight = nn.ParameterList([nn.Parameter(torch.ones(w)) for w in widths])
        self.bias = nn.ParameterList([nn.Parameter(torch.zeros(w)) for w in widths]) if bias else None
        self.chunk = math.gcd(*self.widths)
        n_chunks = [w // self.chunk for w in self.widths]
        chunk_band = torch.repeat_interleave(torch.arange(len(widths)), torch.tensor(n_chunks))   # (C,)
        lay = band_layout(n_chunks)                         # bands over chunks: gather (nb, chunks_max)
        self.register_buffer("chunk_gather", lay["gather"], persistent=False)   # pad slot = C
        self.register_buffer("chunk_band", chunk_band, persistent=False)
        self.register_buffer("band_size", torch.tensor(self.widths, dtype=torch.float32), persistent=False)

    def reset_parameters(self, std: float = 0.0, out_std: float = 0.0) -> None:
        for p in self.weight:
            nn.init.ones_(p)
        for p in self.bias or []:
            nn.init.zeros_(p)

    def band_parameters(self) -> dict[str, int]:
        out = {f"weight.{i}": i for i in range(len(self.widths))}
        if self.bias is not None:
            out.update({f"bias.{i}": i for i in range(len(self.widths))})
        return out

    def _per_chunk_band_mean(self, chunk_sums: torch.Tensor) -> torch.Tensor:
        """(..., C) per-chunk sums -> (..., C, 1): the mean over the chunk's band."""
        band_sums = _pad_to_bands(chunk_sums, self.chunk_gather).sum(-1)            # (..., nb)
        return (band_sums / self.band_size)[..., self.chunk_band].unsqueeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xc = x.to(torch.promote_types(x.dtype, torch.float32)).unflatten(-1, (-1, self.chunk))  # (..., C, g)
        xc = xc - self._per_chunk_band_mean(xc.sum(-1))
        var = self._per_chunk_band_mean((xc * xc).sum(-1))
        y = (xc * torch.rsqrt(var + self.eps)).flatten(-2)                          # (..., D)
        y = y * torch.cat(list(self.weight))
        if self.bias is not None:
            y = y + torch.cat(list(self.bias))
        return y.to(x.dtype)


class BandMLP(nn.Module):
    """Per-band MLPs ``d_i -> h_i -> d_i`` (GELU, dropout) on contiguous bands: `(..., D) -> (..., D)`.

    ``impl`` selects how the 7 band MLPs are batched (all give the same function):
    - ``block_diag``: pack the per-band weights into block-diagonal `(H, D)` / `(D, H)` matrices
      (`torch.block_diag`) and run one dense GEMM each way; costs D*H MACs per token (the dense MLP's cost),
      i.e. D / mean-width times the useful work, but one large tensor-core GEMM.
    - ``bmm``: pad every band to (wmax, hmax) and run one `bmm` over the band axis: nb*wmax*hmax MACs
      (2.6x the useful work for the seed widths, whatever the expansion).
    - ``loop``: one matmul per band (a Python loop of 7 matmuls; exact FLOPs, the fastest for wide
      expansions such as the params-matched arms).
    - ``fused``: the Triton kernel of `band_mlp_kernel` (hidden units kept on chip, forward and backward,
      hidden dropout by Philox, the bands' LayerNorm ``norm`` applied inside it); needs a torch with Triton; on
      non-CUDA tensors it runs the loop.
    Measured fwd+bwd on 32k tokens (H100, bf16, compiled): e=4 block_diag 2.4 ms, bmm 2.9, loop 4.3 (dense
    512->2048 MLP: 1.7); e=24 (params-matched) 7.7 / 12.7 / 6.5; H200 e=24, whole training steps of
    no_wormhole_matched: fused 36.5-36.9 ms / 13.2 GB (LayerNorm inside, the GELU in packed bf16:
    ``gelu16``) vs loop 65 ms / 23.3 GB (with dropout 0.1: 59 vs 76 ms, before the LayerNorm moved inside)
    (benchmarks/RESULTS.md).
    On a 2-core CPU the loop is fastest (FLOPs dominate there). ``auto`` in `LMConfig` picks block_diag, or for
    large expansions fused (loop without Triton) (`transformer.resolve_band_impl`).
    """

    def __init__(self, widths: tuple[int, ...], hidden: tuple[int, ...], dropout: float = 0.0,
                 bias: bool = True, impl: str = "block_diag", gelu16: bool = True):
        super().__init__()
        if impl not in ("block_diag", "bmm", "loop", "fused"):
            raise ValueError(f"model.band_impl: must be block_diag, bmm, loop or fused, got {impl!r}")
        if impl == "fused" and not band_mlp_kernel.available():
            raise ValueError("model.band_impl=fused: needs Triton (it ships with CUDA builds of torch); use auto")
        self.widths, self.hidden, self.impl = tuple(widths), tuple(hidden), impl
        self.gelu16 = gelu16   # fused: the kernels' GELU in packed bf16 arithmetic (bf16 weights)
        self.w1 = nn.ParameterList([nn.Parameter(torch.empty(h, d)) for d, h in zip(widths, hidden)])
        self.w2 = nn.ParameterList([nn.Parameter(torch.empty(d, h)) for d, h in zip(widths, hidden)])
        self.b1 = nn.ParameterList([nn.Parameter(torch.zeros(h)) for h in hidden]) if bias else None
        self.b2 = nn.ParameterList([nn.Parameter(torch.zeros(d)) for d in widths]) if bias else None
        self.drop = nn.Dropout(dropout)
        lay = band_layout(widths)
        self.register_buffer("band_of", lay["band_of"], persistent=False)
        self.register_buffer("gather", lay["gather"], persistent=False)
        self.register_buffer("flat", lay["flat"], persistent=False)
        hlay = band_layout(hidden)
        self.register_buffer("hid_gather", hlay["gather"], persistent=False)  # (nb, hmax) hidden unit, H = pad
        # scatter targets of the flattened per-band weights inside the padded (nb, wmax, hmax) tensors
        w1_idx, w2_idx = [], []
        wmax, hmax = max(widths), max(hidden)
        for i, (d, h) in enumerate(zip(widths, hidden)):
            r, c = torch.meshgrid(torch.arange(h), torch.arange(d), indexing="ij")   # w1_i[r, c] -> W1p[i, c, r]
            w1_idx.append((i * wmax * hmax + c * hmax + r).flatten())
            c2, r2 = torch.meshgrid(torch.arange(d), torch.arange(h), indexing="ij")  # w2_i[c, r] -> W2p[i, r, c]
            w2_idx.append((i * hmax * wmax + r2 * wmax + c2).flatten())
        self.register_buffer("w1_idx", torch.cat(w1_idx), persistent=False)
        self.register_buffer("w2_idx", torch.cat(w2_idx), persistent=False)
        if impl == "fused":   # the kernels' band table (a buffer: no allocation inside a captured CUDA graph)
            self.register_buffer("launch_table", band_mlp_kernel.band_table(tuple(zip(widths, hidden))),
                                 persistent=False)

    def reset_parameters(self, std: float, out_std: float) -> None:
        for w in self.w1:
            nn.init.normal_(w, 0.0, std)
        for w in self.w2:
            nn.init.normal_(w, 0.0, out_std)
        for b in [*(self.b1 or []), *(self.b2 or [])]:
            nn.init.zeros_(b)

    def band_parameters(self) -> dict[str, int]:
        out = {}
        for name in ("w1", "w2", "b1", "b2"):
            if getattr(self, name) is not None:
                out.update({f"{name}.{i}": i for i in range(len(self.widths))})
        return out

    def _biases(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self.b1 is None:
            return None, None
        return torch.cat(list(self.b1)), torch.cat(list(self.b2))

    def _forward_block_diag(self, x: torch.Tensor) -> torch.Tensor:
        b1, b2 = self._biases()
        h = self.drop(F.gelu(F.linear(x, torch.block_diag(*self.w1), b1)))        # (..., H)
        return F.linear(h, torch.block_diag(*self.w2), b2)

    def _forward_bmm(self, x: torch.Tensor) -> torch.Tensor:
        nb, wmax, hmax = len(self.widths), max(self.widths), max(self.hidden)
        w1p = x.new_zeros(nb * wmax * hmax, dtype=self.w1[0].dtype).index_copy(
            0, self.w1_idx, torch.cat([w.flatten() for w in self.w1])).view(nb, wmax, hmax)
        w2p = x.new_zeros(nb * hmax * wmax, dtype=self.w2[0].dtype).index_copy(
            0, self.w2_idx, torch.cat([w.flatten() for w in self.w2])).view(nb, hmax, wmax)
        lead = x.shape[:-1]
        xp = _pad_to_bands(x, self.gather).reshape(-1, nb, wmax).transpose(0, 1)  # (nb, N, wmax)
        b1, b2 = self._biases()
        h = torch.bmm(xp, w1p.to(xp.dtype))                                        # (nb, N, hmax)
        if b1 is not None:
            h = h + F.pad(b1, (0, 1))[self.hid_gather].unsqueeze(1).to(h.dtype)
        h = self.drop(F.gelu(h))
        y = torch.bmm(h, w2p.to(h.dtype)).transpose(0, 1).reshape(*lead, nb * wmax)[..., self.flat]
        return y if b2 is None else y + b2

    def _forward_loop(self, x: torch.Tensor) -> torch.Tensor:
        b1s = list(self.b1) if self.b1 is not None else [None] * len(self.widths)
        b2s = list(self.b2) if self.b2 is not None else [None] * len(self.widths)
        outs = [F.linear(self.drop(F.gelu(F.linear(xi, w1, b1))), w2, b2)
                for xi, w1, b1, w2, b2 in zip(x.split(self.widths, -1), self.w1, b1s, self.w2, b2s)]
        return torch.cat(outs, -1)

    def _forward_fused(self, x: torch.Tensor, norm: BandLayerNorm | None = None) -> torch.Tensor:
        """The Triton kernel on CUDA (or under TRITON_INTERPRET=1), with ``norm`` (the bands' LayerNorm) applied
        inside it; the per-band loop, the same function, on other devices (hidden dropout masks then come from
        torch's generator instead of Philox)."""
        if not (x.is_cuda or triton_support.interpreted()):
            return self._forward_loop(norm(x) if norm is not None else x)
        dev = x.device.type
        dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
        b1 = list(self.b1) if self.b1 is not None else []
        b2 = list(self.b2) if self.b2 is not None else []
        w1, w2 = [w.to(dtype) for w in self.w1], [w.to(dtype) for w in self.w2]  # as autocast's F.linear does
        p_drop = self.drop.p if self.training else 0.0
        # from torch's generator (seeded runs repeat); drawn only for dropout, so eval/no-dropout steps leave the
        # generator's stream as the other impls do
        seed = torch.randint(0, 2 ** 31 - 1, (1,), device=x.device) if p_drop > 0 else None
        flat = x.reshape(-1, x.shape[-1])
        if norm is None:
            y = band_mlp_kernel.band_mlp(flat.to(dtype), w1, b1, w2, b2, seed, p_drop, table=self.launch_table,
                                         gelu16=self.gelu16)
        else:   # the residual stream itself (LayerNorm statistics in fp32, as BandLayerNorm)
            ln = (list(norm.weight), list(norm.bias) if norm.bias is not None else [], norm.eps)
            y = band_mlp_kernel.band_mlp(flat, w1, b1, w2, b2, seed, p_drop, ln, self.launch_table, self.gelu16)
        return y.view(x.shape)

    def forward(self, x: torch.Tensor, ablate_band: int | None = None,
                norm: BandLayerNorm | None = None) -> torch.Tensor:
        """x (..., D) -> (..., D): the MLPs of ``norm(x)`` (norm: the bands' LayerNorm, which the fused kernel
        applies on chip; None: of x); ``ablate_band=i`` zeroes band i's MLP output."""
        if self.impl == "fused":
            y = self._forward_fused(x, norm)
        else:
            x = norm(x) if norm is not None else x
            y = {"block_diag": self._forward_block_diag, "bmm": self._forward_bmm, "loop": self._forward_loop}[
                self.impl](x)
        if ablate_band is not None:
            y = y * (self.band_of != ablate_band).to(y.dtype)
        return self.drop(y)
