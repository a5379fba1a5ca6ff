"""Fused per-band MLP (Triton): ``y[:, band i] = W2_i gelu(W1_i x[:, band i] + b1_i) + b2_i`` for all bands, with
the hidden units kept on chip (`akira::band_mlp`, forward and backward).

Why: at the params-matched expansion (~24) the band MLPs have the dense MLP's FLOPs but 6x its hidden activations
(12,288 per token), whose round trips through memory (fc1 output, GELU in/out, saved for the backward) and whose
small-K/N GEMMs (band widths 32-128) dominate the `*_matched` arms' step (benchmarks/RESULTS.md). Here:
- forward: one program per (token block, band) loops over the band's hidden units in tiles:
  ``acc += gelu(x W1_tile^T + b1_tile) W2_tile^T``; nothing of size hidden is written.
- backward, like flash attention's: recompute ``pre = x W1^T + b1`` tile by tile; one kernel per band gives
  ``dx`` (programs over token blocks), one gives ``dW1, db1, dW2`` (programs over hidden tiles x token splits,
  per-split partials summed afterwards: deterministic, no atomics); ``db2 = sum(dy)`` in torch. With
  ``CONFIG["dw"] = "gemm"`` the dx kernel also writes ``dpre`` and ``gelu(pre)`` (bf16, tokens x hidden) and the
  weight gradients are two cuBLAS GEMMs per band over the token axis instead (less recompute, more traffic).
GELU is the exact (erf) form, as `F.gelu`. Matmuls take the input's dtype (bf16 under autocast) with fp32
accumulation; fp32 inputs run exact (no TF32). Dropout inside the MLP is not supported (`BandMLP` refuses it).
Runs on CUDA, or on CPU under ``TRITON_INTERPRET=1`` (the tests' check against the per-band reference).
"""
from __future__ import annotations

import torch

from .triton_support import available, dot_precision, pow2, tl, triton  # noqa: F401 - available() is API

# launch configuration (module-level so that benchmarks/lm_speed.py --micro can compare several)
# dw_splits: token splits of the dW kernel, 0 = enough for ~2 programs per SM; dw: "fused" (the dW kernel) or
# "gemm" (dx kernel stores dpre and gelu(pre), cuBLAS forms dW)
CONFIG = {"block_m": 64, "block_h": 64, "warps": 4, "stages": 3, "dw_block_m": 64, "dw_splits": 0, "dw": "fused"}


if triton is not None:
    @triton.jit
    def _gelu(p):
        return 0.5 * p * (1.0 + tl.math.erf(p * 0.7071067811865476))

    @triton.jit
    def _gelu_grad(p):
        cdf = 0.5 * (1.0 + tl.math.erf(p * 0.7071067811865476))
        return cdf + p * 0.3989422804014327 * tl.exp(-0.5 * p * p)

    @triton.jit
    def _gelu_and_grad(p):
        """(gelu(p), gelu'(p)) sharing one erf."""
        cdf = 0.5 * (1.0 + tl.math.erf(p * 0.7071067811865476))
        return p * cdf, cdf + p * 0.3989422804014327 * tl.exp(-0.5 * p * p)

    @triton.jit
    def _token_block(N, D, col0, d, BM: tl.constexpr, BD: tl.constexpr):
        """This program's (BM, BD) tile of band columns [col0, col0 + d) of an (N, D) tensor: offsets, mask."""
        rows = tl.program_id(0) * BM + tl.arange(0, BM)
        cols = tl.arange(0, BD)
        return rows[:, None] * D + col0 + cols[None, :], (rows < N)[:, None] & (cols < d)[None, :]

    @triton.jit
    def _weight_tiles(w1_ptr, w2_ptr, hs, d, h, dt, BD: tl.constexpr):
        """W1[hs, :]^T and W2[:, hs], both (BD, len(hs)) in dtype dt, zero outside (d, h)."""
        cols = tl.arange(0, BD)
        ok = (cols < d)[:, None] & (hs < h)[None, :]
        w1t = tl.load(w1_ptr + hs[None, :] * d + cols[:, None], mask=ok, other=0.0).to(dt)
        w2 = tl.load(w2_ptr + cols[:, None] * h + hs[None, :], mask=ok, other=0.0).to(dt)
        return w1t, w2

    @triton.jit
    def _fwd_kernel(x_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, y_ptr, N, D, col0, d, h,
                    HAS_BIAS: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr, BH: tl.constexpr,
                    PREC: tl.constexpr):
        io, io_ok = _token_block(N, D, col0, d, BM, BD)
        dt = x_ptr.dtype.element_ty
        x = tl.load(x_ptr + io, mask=io_ok, other=0.0)
        acc = tl.zeros((BM, BD), dtype=tl.float32)
        for h0 in range(0, h, BH):
            hs = h0 + tl.arange(0, BH)
            w1t, w2 = _weight_tiles(w1_ptr, w2_ptr, hs, d, h, dt, BD)
            pre = tl.dot(x, w1t, out_dtype=tl.float32, input_precision=PREC)
            if HAS_BIAS:
                pre += tl.load(b1_ptr + hs, mask=hs < h, other=0.0).to(tl.float32)[None, :]
            acc += tl.dot(_gelu(pre).to(dt), tl.trans(w2), out_dtype=tl.float32, input_precision=PREC)
        if HAS_BIAS:
            cols = tl.arange(0, BD)
            acc += tl.load(b2_ptr + cols, mask=cols < d, other=0.0).to(tl.float32)[None, :]
        tl.store(y_ptr + io, acc.to(y_ptr.dtype.element_ty), mask=io_ok)

    @triton.jit
    def _dx_kernel(x_ptr, dy_ptr, w1_ptr, b1_ptr, w2_ptr, dx_ptr, dpre_ptr, act_ptr, N, D, col0, d, h,
                   HAS_BIAS: tl.constexpr, STORE: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr,
                   BH: tl.constexpr, PREC: tl.constexpr):
        """dx of one token block; with STORE also dpre and gelu(pre), (N, h) row-major, for the GEMM dW path."""
        io, io_ok = _token_block(N, D, col0, d, BM, BD)
        dt = x_ptr.dtype.element_ty
        x = tl.load(x_ptr + io, mask=io_ok, other=0.0)
        dy = tl.load(dy_ptr + io, mask=io_ok, other=0.0).to(dt)
        dx = tl.zeros((BM, BD), dtype=tl.float32)
        for h0 in range(0, h, BH):
            hs = h0 + tl.arange(0, BH)
            w1t, w2 = _weight_tiles(w1_ptr, w2_ptr, hs, d, h, dt, BD)
            pre = tl.dot(x, w1t, out_dtype=tl.float32, input_precision=PREC)
            if HAS_BIAS:
                pre += tl.load(b1_ptr + hs, mask=hs < h, other=0.0).to(tl.float32)[None, :]
            if STORE:
                act, grad = _gelu_and_grad(pre)
                dpre = tl.dot(dy, w2, out_dtype=tl.float32, input_precision=PREC) * grad
                rows = tl.program_id(0) * BM + tl.arange(0, BM)
                ho = rows[:, None] * h + hs[None, :]
                h_ok = (rows < N)[:, None] & (hs < h)[None, :]
                tl.store(dpre_ptr + ho, dpre.to(dpre_ptr.dtype.element_ty), mask=h_ok)
                tl.store(act_ptr + ho, act.to(act_ptr.dtype.element_ty), mask=h_ok)
            else:
                dpre = tl.dot(dy, w2, out_dtype=tl.float32, input_precision=PREC) * _gelu_grad(pre)
            dx += tl.dot(dpre.to(dt), tl.trans(w1t), out_dtype=tl.float32, input_precision=PREC)
        tl.store(dx_ptr + io, dx.to(dx_ptr.dtype.element_ty), mask=io_ok)

    @triton.jit
    def _dw_kernel(x_ptr, dy_ptr, w1_ptr, b1_ptr, w2_ptr, dw1_ptr, db1_ptr, dw2_ptr, N, D, col0, d, h,
                   rows_per_split, HAS_BIAS: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr, BH: tl.constexpr,
                   PREC: tl.constexpr):
        pid_h, split = tl.program_id(0), tl.program_id(1)
        hs = pid_h * BH + tl.arange(0, BH)
        cols = tl.arange(0, BD)
        h_ok, c_ok = hs < h, cols < d
        w_ok = c_ok[:, None] & h_ok[None, :]
        dt = x_ptr.dtype.element_ty
        w1t, w2 = _weight_tiles(w1_ptr, w2_ptr, hs, d, h, dt, BD)
        if HAS_BIAS:
            b1 = tl.load(b1_ptr + hs, mask=h_ok, other=0.0).to(tl.float32)
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
            pre = tl.dot(x, w1t, out_dtype=tl.float32, input_precision=PREC)
            if HAS_BIAS:
                pre += b1[None, :]
            act, grad = _gelu_and_grad(pre)
            dpre = tl.dot(dy, w2, out_dtype=tl.float32, input_precision=PREC) * grad
            dw1t += tl.dot(tl.trans(x), dpre.to(dt), out_dtype=tl.float32, input_precision=PREC)
            dw2 += tl.dot(tl.trans(dy), act.to(dt), out_dtype=tl.float32, input_precision=PREC)
            db1 += tl.sum(dpre, 0)
        part = split * h * d
        tl.store(dw1_ptr + part + hs[None, :] * d + cols[:, None], dw1t, mask=w_ok)
        tl.store(dw2_ptr + part + cols[:, None] * h + hs[None, :], dw2, mask=w_ok)
        if HAS_BIAS:
            tl.store(db1_ptr + split * h + hs, db1, mask=h_ok)


@torch.library.custom_op("akira::band_mlp", mutates_args=())
def band_mlp(x: torch.Tensor, w1: list[torch.Tensor], b1: list[torch.Tensor], w2: list[torch.Tensor],
             b2: list[torch.Tensor]) -> torch.Tensor:
    """x (N, D) -> y (N, D) in x's dtype; band i = columns [sum d_<i, + d_i) with d_i = w1[i].shape[1];
    b1, b2 empty lists for no biases."""
    x = x.contiguous()
    n, dim = x.shape
    y = torch.empty_like(x)
    bm, bh, col0 = CONFIG["block_m"], CONFIG["block_h"], 0
    for i, (w1_i, w2_i) in enumerate(zip(w1, w2)):
        h, d = w1_i.shape
        b1_i, b2_i = (b1[i], b2[i]) if b1 else (w1_i, w1_i)
        _fwd_kernel[(triton.cdiv(n, bm),)](x, w1_i, b1_i, w2_i, b2_i, y, n, dim, col0, d, h,
                                           HAS_BIAS=bool(b1), BM=bm, BD=pow2(d), BH=bh, PREC=dot_precision(x),
                                           num_warps=CONFIG["warps"], num_stages=CONFIG["stages"])
        col0 += d
    return y


@band_mlp.register_fake
def _(x, w1, b1, w2, b2):
    return x.new_empty(x.shape)


def _dw_splits(n: int, h_tiles: int, block_m: int, device: torch.device) -> int:
    """Token splits of the dW kernel: CONFIG["dw_splits"], or (0) enough for ~2 programs per SM."""
    if CONFIG["dw_splits"]:
        want = CONFIG["dw_splits"]
    else:
        sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4
        want = triton.cdiv(2 * sms, h_tiles)
    return max(1, min(want, triton.cdiv(n, block_m)))


@torch.library.custom_op("akira::band_mlp_backward", mutates_args=())
def band_mlp_backward(dy: torch.Tensor, x: torch.Tensor, w1: list[torch.Tensor], b1: list[torch.Tensor],
                      w2: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor],
                                                       list[torch.Tensor], list[torch.Tensor]]:
    """(dx, dW1, db1, dW2, db2) per band; db1 and db2 empty without biases."""
    x, dy = x.contiguous(), dy.contiguous().to(x.dtype)
    n, dim = x.shape
    dx = torch.empty_like(x)
    bm, bh, dbm, gemm = CONFIG["block_m"], CONFIG["block_h"], CONFIG["dw_block_m"], CONFIG["dw"] == "gemm"
    dw1, db1, dw2, db2 = [], [], [], []
    col0 = 0
    for i, (w1_i, w2_i) in enumerate(zip(w1, w2)):
        h, d = w1_i.shape
        b1_i = b1[i] if b1 else w1_i
        meta = {"HAS_BIAS": bool(b1), "BD": pow2(d), "BH": bh, "PREC": dot_precision(x),
                "num_warps": CONFIG["warps"], "num_stages": CONFIG["stages"]}
        dpre = act = dx  # unused pointers unless the GEMM dW path stores them
        if gemm:
            dpre, act = torch.empty(n, h, dtype=x.dtype, device=x.device), torch.empty(n, h, dtype=x.dtype,
                                                                                         device=x.device)
        _dx_kernel[(triton.cdiv(n, bm),)](x, dy, w1_i, b1_i, w2_i, dx, dpre, act, n, dim, col0, d, h, STORE=gemm,
                                          BM=bm, **meta)
        x_i, dy_i = x[:, col0:col0 + d], dy[:, col0:col0 + d]
        if gemm:
            dw1.append((dpre.t() @ x_i).to(w1_i.dtype))                         # (h, d)
            dw2.append((dy_i.t() @ act).to(w2_i.dtype))                         # (d, h)
            if b1:
                db1.append(dpre.float().sum(0).to(b1[i].dtype))
        else:
            splits = _dw_splits(n, triton.cdiv(h, bh), dbm, x.device)
            rows_per_split = triton.cdiv(triton.cdiv(n, splits), dbm) * dbm
            f32 = {"dtype": torch.float32, "device": x.device}
            p_w1, p_w2 = torch.empty(splits, h, d, **f32), torch.empty(splits, d, h, **f32)
            p_b1 = torch.empty(splits, h, **f32) if b1 else p_w1
            _dw_kernel[(triton.cdiv(h, bh), splits)](x, dy, w1_i, b1_i, w2_i, p_w1, p_b1, p_w2, n, dim, col0, d,
                                                     h, rows_per_split, BM=dbm, **meta)
            dw1.append(p_w1.sum(0).to(w1_i.dtype))
            dw2.append(p_w2.sum(0).to(w2_i.dtype))
            if b1:
                db1.append(p_b1.sum(0).to(b1[i].dtype))
        if b1:
            db2.append(dy_i.float().sum(0).to(b1[i].dtype))
        col0 += d
    return dx, dw1, db1, dw2, db2


@band_mlp_backward.register_fake
def _(dy, x, w1, b1, w2):
    like = [torch.empty_like(w) for w in w1], [torch.empty_like(b) for b in b1], [torch.empty_like(w) for w in w2]
    db2 = [b.new_empty(w.shape[1]) for b, w in zip(b1, w1)]
    return x.new_empty(x.shape), like[0], like[1], like[2], db2


def _setup_context(ctx, inputs, output):
    x, w1, b1, w2, _ = inputs
    ctx.n_bands, ctx.has_bias = len(w1), bool(b1)
    ctx.save_for_backward(x, *w1, *b1, *w2)


def _backward(ctx, dy):
    saved, nb = ctx.saved_tensors, ctx.n_bands
    x, w1 = saved[0], list(saved[1:1 + nb])
    b1 = list(saved[1 + nb:1 + 2 * nb]) if ctx.has_bias else []
    w2 = list(saved[1 + nb + len(b1):])
    dx, dw1, db1, dw2, db2 = band_mlp_backward(dy, x, w1, b1, w2)
    return dx, dw1, db1, dw2, db2  # empty bias-gradient lists without biases (same structure as the inputs)


band_mlp.register_autograd(_backward, setup_context=_setup_context)
