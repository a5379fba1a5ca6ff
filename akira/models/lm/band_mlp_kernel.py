"""Fused per-band MLP (Triton): ``y[:, band i] = W2_i gelu(W1_i x[:, band i] + b1_i) + b2_i`` for all bands, with
the hidden units kept on chip (`akira::band_mlp`, forward and backward).

Why: at the params-matched expansion (~24) the band MLPs have the dense MLP's FLOPs but 6x its hidden activations
(12,288 per token), whose round trips through memory (fc1 output, GELU in/out, saved for the backward) and whose
small-K/N GEMMs (band widths 32-128) dominate the `*_matched` arms' step (benchmarks/RESULTS.md). Measured on an
H200 (batch 64 x 512, bf16, compiled, no dropout): the arms' steps as fast as the per-band loop or faster
(no_wormhole_matched 57.7 vs 57.0 ms, full_matched 75.1 vs 81.6) at ~10 GB less peak memory (13.6 vs 23.3 GB,
17.8 vs 27.0); alone, fwd+bwd 6.6 vs 7.2 ms, of which the dW kernel takes half. Here:
- forward: one program per (token block, band) loops over the band's hidden units in tiles:
  ``acc += gelu(x W1_tile^T + b1_tile) W2_tile^T``; nothing of size hidden is written.
- backward, like flash attention's: recompute ``pre = x W1^T + b1`` tile by tile; one kernel per band gives
  ``dx`` (programs over token blocks), one gives ``dW1, db1, dW2`` (programs over hidden tiles x token splits,
  per-split partials summed afterwards: deterministic, no atomics); ``db2 = sum(dy)`` in torch.
- dropout on the hidden units (as `BandMLP`'s other paths apply it after the GELU): Philox random numbers from a
  seed tensor and each (band, token, hidden unit), regenerated in the backward kernels, so no mask is stored.
  Measured slow with one Philox call per hidden unit in each of the three kernels (H200, no_wormhole_matched at
  dropout 0.1: 95.4 ms per step vs 66.3 for the loop), so `band_impl=auto` picks the kernel only without dropout;
  since then one Philox call serves four units (`_keep`), not yet measured.
GELU is the exact (erf) form, as `F.gelu`. Matmuls take the input's dtype (bf16 under autocast) with fp32
accumulation; fp32 inputs run exact (no TF32).
Runs on CUDA, or on CPU under ``TRITON_INTERPRET=1`` (the tests' check against the per-band reference).
"""
from __future__ import annotations

import torch

from .triton_support import available, dot_precision, pow2, tl, triton  # noqa: F401 - available() is API

# Launch configuration (module-level so that benchmarks/lm_speed.py --micro can compare several). The default is
# the fastest of 20 measured at the params-matched expansion (H200, benchmarks/RESULTS.md): e~24 fwd+bwd 6.6 ms
# vs 7.2 for the per-band loop. dw_splits: token splits of the dW kernel (partials summed afterwards).
CONFIG = {"block_m": 64, "block_h": 32, "warps": 4, "stages": 3, "dw_block_m": 64, "dw_splits": 8}


if triton is not None:
    @triton.jit
    def _gelu(p):
        return 0.5 * p * (1.0 + tl.math.erf(p * 0.7071067811865476))

    @triton.jit
    def _gelu_and_grad(p):
        """(gelu(p), gelu'(p)) sharing one erf."""
        cdf = 0.5 * (1.0 + tl.math.erf(p * 0.7071067811865476))
        return p * cdf, cdf + p * 0.3989422804014327 * tl.exp(-0.5 * p * p)

    @triton.jit
    def _keep(seed_ptr, band, rows, h0, h, p_drop, BH: tl.constexpr):
        """(len(rows), BH) dropout keep-mask of hidden units h0 .. h0 + BH (h0 a multiple of 4), True with
        probability 1 - p_drop: a function of (seed, band, token row, hidden unit) only, so the backward kernels
        regenerate the forward's. One Philox call gives four 32-bit draws, for units 4q .. 4q + 3 (q = unit // 4);
        each draw's top 24 bits are the uniform number compared with p_drop."""
        quads = h0 // 4 + tl.arange(0, BH // 4)
        r0, r1, r2, r3 = tl.randint4x(tl.load(seed_ptr) + band, rows[:, None] * tl.cdiv(h, 4) + quads[None, :])
        r = tl.reshape(tl.join(tl.join(r0, r1), tl.join(r2, r3)), (rows.shape[0], BH))
        return (r >> 8).to(tl.float32) * 5.960464477539063e-08 >= p_drop       # 2^-24

    @triton.jit
    def _token_block(N, D, col0, d, BM: tl.constexpr, BD: tl.constexpr):
        """This program's token rows and its (BM, BD) tile of band columns [col0, col0 + d) of an (N, D) tensor:
        rows, offsets, mask."""
        rows = tl.program_id(0) * BM + tl.arange(0, BM)
        cols = tl.arange(0, BD)
        return rows, rows[:, None] * D + col0 + cols[None, :], (rows < N)[:, None] & (cols < d)[None, :]

    @triton.jit
    def _weight_tiles(w1_ptr, w2_ptr, hs, d, h, dt, BD: tl.constexpr):
        """W1[hs, :]^T and W2[:, hs], both (BD, len(hs)) in dtype dt, zero outside (d, h)."""
        cols = tl.arange(0, BD)
        ok = (cols < d)[:, None] & (hs < h)[None, :]
        w1t = tl.load(w1_ptr + hs[None, :] * d + cols[:, None], mask=ok, other=0.0).to(dt)
        w2 = tl.load(w2_ptr + cols[:, None] * h + hs[None, :], mask=ok, other=0.0).to(dt)
        return w1t, w2

    @triton.jit
    def _pre(x, w1t, b1_ptr, hs, h, HAS_BIAS: tl.constexpr, PREC: tl.constexpr):
        """Hidden pre-activations x W1^T + b1 of one hidden tile, fp32."""
        pre = tl.dot(x, w1t, out_dtype=tl.float32, input_precision=PREC)
        if HAS_BIAS:
            pre += tl.load(b1_ptr + hs, mask=hs < h, other=0.0).to(tl.float32)[None, :]
        return pre

    @triton.jit
    def _fwd_kernel(x_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, y_ptr, seed_ptr, p_drop, band, N, D, col0, d, h,
                    HAS_BIAS: tl.constexpr, DROP: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr,
                    BH: tl.constexpr, PREC: tl.constexpr):
        rows, io, io_ok = _token_block(N, D, col0, d, BM, BD)
        dt = x_ptr.dtype.element_ty
        x = tl.load(x_ptr + io, mask=io_ok, other=0.0)
        acc = tl.zeros((BM, BD), dtype=tl.float32)
        for h0 in range(0, h, BH):
            hs = h0 + tl.arange(0, BH)
            w1t, w2 = _weight_tiles(w1_ptr, w2_ptr, hs, d, h, dt, BD)
            act = _gelu(_pre(x, w1t, b1_ptr, hs, h, HAS_BIAS, PREC))
            if DROP:
                act = tl.where(_keep(seed_ptr, band, rows, h0, h, p_drop, BH), act / (1.0 - p_drop), 0.0)
            acc += tl.dot(act.to(dt), tl.trans(w2), out_dtype=tl.float32, input_precision=PREC)
        if HAS_BIAS:
            cols = tl.arange(0, BD)
            acc += tl.load(b2_ptr + cols, mask=cols < d, other=0.0).to(tl.float32)[None, :]
        tl.store(y_ptr + io, acc.to(y_ptr.dtype.element_ty), mask=io_ok)

    @triton.jit
    def _dx_kernel(x_ptr, dy_ptr, w1_ptr, b1_ptr, w2_ptr, dx_ptr, seed_ptr, p_drop, band, N, D, col0, d, h,
                   HAS_BIAS: tl.constexpr, DROP: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr,
                   BH: tl.constexpr, PREC: tl.constexpr):
        rows, io, io_ok = _token_block(N, D, col0, d, BM, BD)
        dt = x_ptr.dtype.element_ty
        x = tl.load(x_ptr + io, mask=io_ok, other=0.0)
        dy = tl.load(dy_ptr + io, mask=io_ok, other=0.0).to(dt)
        dx = tl.zeros((BM, BD), dtype=tl.float32)
        for h0 in range(0, h, BH):
            hs = h0 + tl.arange(0, BH)
            w1t, w2 = _weight_tiles(w1_ptr, w2_ptr, hs, d, h, dt, BD)
            _, grad = _gelu_and_grad(_pre(x, w1t, b1_ptr, hs, h, HAS_BIAS, PREC))
            dact = tl.dot(dy, w2, out_dtype=tl.float32, input_precision=PREC)
            if DROP:
                dact = tl.where(_keep(seed_ptr, band, rows, h0, h, p_drop, BH), dact / (1.0 - p_drop), 0.0)
            dx += tl.dot((dact * grad).to(dt), tl.trans(w1t), out_dtype=tl.float32, input_precision=PREC)
        tl.store(dx_ptr + io, dx.to(dx_ptr.dtype.element_ty), mask=io_ok)

    @triton.jit
    def _dw_kernel(x_ptr, dy_ptr, w1_ptr, b1_ptr, w2_ptr, dw1_ptr, db1_ptr, dw2_ptr, seed_ptr, p_drop, band, N, D,
                   col0, d, h, rows_per_split, HAS_BIAS: tl.constexpr, DROP: tl.constexpr, BM: tl.constexpr,
                   BD: tl.constexpr, BH: tl.constexpr, PREC: tl.constexpr):
        pid_h, split = tl.program_id(0), tl.program_id(1)
        hs = pid_h * BH + tl.arange(0, BH)
        cols = tl.arange(0, BD)
        h_ok, c_ok = hs < h, cols < d
        w_ok = c_ok[:, None] & h_ok[None, :]
        dt = x_ptr.dtype.element_ty
        w1t, w2 = _weight_tiles(w1_ptr, w2_ptr, hs, d, h, dt, BD)
        dw1t = tl.zeros((BD, BH), dtype=tl.float32)
        dw2 = tl.zeros((BD, BH), dtype=tl.float32)
        db1 = tl.zeros((BH,), dtype=tl.float32)
        start = split * rows_per_split
        for m0 in range(start, start + rows_per_split, BM):
            rows = m0 + tl.arange(0, BM)
            io = rows[:, None] * D + col0 + cols[None, :]
            io_ok = (rows < N)[:, None] & c_ok[None, :]
            x = tl.load(x_ptr + io, mask=io_ok, other=0.0)
            dy = tl.load(dy_ptr + io, mask=io_ok, other=0.0).to(dt)
            act, grad = _gelu_and_grad(_pre(x, w1t, b1_ptr, hs, h, HAS_BIAS, PREC))
            dact = tl.dot(dy, w2, out_dtype=tl.float32, input_precision=PREC)
            if DROP:
                keep = _keep(seed_ptr, band, rows, pid_h * BH, h, p_drop, BH)
                act = tl.where(keep, act / (1.0 - p_drop), 0.0)
                dact = tl.where(keep, dact / (1.0 - p_drop), 0.0)
            dpre = dact * grad
            dw1t += tl.dot(tl.trans(x), dpre.to(dt), out_dtype=tl.float32, input_precision=PREC)
            dw2 += tl.dot(tl.trans(dy), act.to(dt), out_dtype=tl.float32, input_precision=PREC)
            db1 += tl.sum(dpre, 0)
        part = split * h * d
        tl.store(dw1_ptr + part + hs[None, :] * d + cols[:, None], dw1t, mask=w_ok)
        tl.store(dw2_ptr + part + cols[:, None] * h + hs[None, :], dw2, mask=w_ok)
        if HAS_BIAS:
            tl.store(db1_ptr + split * h + hs, db1, mask=h_ok)


def _seed_ptr(seed: torch.Tensor | None, x: torch.Tensor, p_drop: float) -> torch.Tensor:
    """The kernels' seed argument: the seed, or (no dropout: never read) any tensor."""
    if p_drop > 0 and seed is None:
        raise ValueError("akira::band_mlp: dropout (p_drop > 0) needs a seed tensor")
    return seed if seed is not None else x


def _meta(x: torch.Tensor, d: int, has_bias: bool, p_drop: float) -> dict:
    return {"HAS_BIAS": has_bias, "DROP": p_drop > 0, "BD": pow2(d), "BH": CONFIG["block_h"],
            "PREC": dot_precision(x), "num_warps": CONFIG["warps"], "num_stages": CONFIG["stages"]}


@torch.library.custom_op("akira::band_mlp", mutates_args=())
def band_mlp(x: torch.Tensor, w1: list[torch.Tensor], b1: list[torch.Tensor], w2: list[torch.Tensor],
             b2: list[torch.Tensor], seed: torch.Tensor | None, p_drop: float) -> torch.Tensor:
    """x (N, D) -> y (N, D) in x's dtype; band i = columns [sum d_<i, + d_i) with d_i = w1[i].shape[1];
    b1, b2 empty lists for no biases; hidden dropout with probability p_drop, mask drawn from seed (int64, (1,);
    None when p_drop is 0)."""
    x = x.contiguous()
    seed = _seed_ptr(seed, x, p_drop)
    n, dim = x.shape
    y = torch.empty_like(x)
    col0 = 0
    for i, (w1_i, w2_i) in enumerate(zip(w1, w2)):
        h, d = w1_i.shape
        b1_i, b2_i = (b1[i], b2[i]) if b1 else (w1_i, w1_i)
        _fwd_kernel[(triton.cdiv(n, CONFIG["block_m"]),)](
            x, w1_i, b1_i, w2_i, b2_i, y, seed, p_drop, i, n, dim, col0, d, h, BM=CONFIG["block_m"],
            **_meta(x, d, bool(b1), p_drop))
        col0 += d
    return y


@band_mlp.register_fake
def _(x, w1, b1, w2, b2, seed, p_drop):
    return x.new_empty(x.shape)


@torch.library.custom_op("akira::band_mlp_backward", mutates_args=())
def band_mlp_backward(dy: torch.Tensor, x: torch.Tensor, w1: list[torch.Tensor], b1: list[torch.Tensor],
                      w2: list[torch.Tensor], seed: torch.Tensor | None, p_drop: float
                      ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], list[torch.Tensor],
                                 list[torch.Tensor]]:
    """(dx, dW1, db1, dW2, db2) per band; db1 and db2 empty without biases."""
    x, dy = x.contiguous(), dy.contiguous().to(x.dtype)
    seed = _seed_ptr(seed, x, p_drop)
    n, dim = x.shape
    dx = torch.empty_like(x)
    bh, dbm = CONFIG["block_h"], CONFIG["dw_block_m"]
    splits = max(1, min(CONFIG["dw_splits"], triton.cdiv(n, dbm)))
    rows_per_split = triton.cdiv(triton.cdiv(n, splits), dbm) * dbm
    dw1, db1, dw2, db2 = [], [], [], []
    col0 = 0
    for i, (w1_i, w2_i) in enumerate(zip(w1, w2)):
        h, d = w1_i.shape
        b1_i = b1[i] if b1 else w1_i
        meta = _meta(x, d, bool(b1), p_drop)
        _dx_kernel[(triton.cdiv(n, CONFIG["block_m"]),)](
            x, dy, w1_i, b1_i, w2_i, dx, seed, p_drop, i, n, dim, col0, d, h, BM=CONFIG["block_m"], **meta)
        f32 = {"dtype": torch.float32, "device": x.device}
        p_w1, p_w2 = torch.empty(splits, h, d, **f32), torch.empty(splits, d, h, **f32)
        p_b1 = torch.empty(splits, h, **f32) if b1 else p_w1
        _dw_kernel[(triton.cdiv(h, bh), splits)](
            x, dy, w1_i, b1_i, w2_i, p_w1, p_b1, p_w2, seed, p_drop, i, n, dim, col0, d, h, rows_per_split,
            BM=dbm, **meta)
        dw1.append(p_w1.sum(0).to(w1_i.dtype))
        dw2.append(p_w2.sum(0).to(w2_i.dtype))
        if b1:
            db1.append(p_b1.sum(0).to(b1[i].dtype))
            db2.append(dy[:, col0:col0 + d].float().sum(0).to(b1[i].dtype))
        col0 += d
    return dx, dw1, db1, dw2, db2


@band_mlp_backward.register_fake
def _(dy, x, w1, b1, w2, seed, p_drop):
    like = [torch.empty_like(w) for w in w1], [torch.empty_like(b) for b in b1], [torch.empty_like(w) for w in w2]
    db2 = [b.new_empty(w.shape[1]) for b, w in zip(b1, w1)]
    return x.new_empty(x.shape), like[0], like[1], like[2], db2


def _setup_context(ctx, inputs, output):
    x, w1, b1, w2, _, seed, p_drop = inputs
    ctx.n_bands, ctx.has_bias, ctx.p_drop = len(w1), bool(b1), p_drop
    ctx.save_for_backward(x, seed, *w1, *b1, *w2)


def _backward(ctx, dy):
    saved, nb = ctx.saved_tensors, ctx.n_bands
    x, seed, w1 = saved[0], saved[1], list(saved[2:2 + nb])
    b1 = list(saved[2 + nb:2 + 2 * nb]) if ctx.has_bias else []
    w2 = list(saved[2 + nb + len(b1):])
    dx, dw1, db1, dw2, db2 = band_mlp_backward(dy, x, w1, b1, w2, seed, ctx.p_drop)
    return dx, dw1, db1, dw2, db2, None, None  # empty bias-gradient lists without biases (as the inputs)


band_mlp.register_autograd(_backward, setup_context=_setup_context)
