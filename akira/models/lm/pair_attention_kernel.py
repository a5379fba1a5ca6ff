"""Causal flash attention for small, unequal head dims (Triton): `akira::pair_attention`, forward and backward.

The wormhole's 42 pair-heads have q/k dim c = 16 and v dim 2c = 32. At these widths the SDPA backends spend
most of their time on the softmax bookkeeping rather than the matmuls (cuDNN: 1.83 ms fwd+bwd per layer on an
H200 for 64 x 512 tokens, twice the main 8 x 64 attention; benchmarks/RESULTS.md). This is the FlashAttention-2
algorithm written for such heads, so that the tile shapes can be chosen for them: forward with online softmax
(exp2, log-sum-exp saved), backward as two kernels (dK/dV over key blocks, dQ over query blocks) with
``delta = rowsum(o * do)`` formed in torch. Inputs (B, H, S, D) with any strides and a unit last stride;
fp32 inputs run exact (no TF32). Runs on CUDA, or on CPU under ``TRITON_INTERPRET=1`` (the tests' reference
check against `scaled_dot_product_attention`).
Opt-in (`model.wormhole_attention=triton`): on an H200 (42 heads, 64 x 512 tokens, bf16, fwd+bwd) it takes 2.29 ms
at its best launch configuration of four vs cuDNN's 1.84 (benchmarks/RESULTS.md), so SDPA stays the default. Not tried yet: one program per (batch, source band) that loads each K/V tile once for the 6 target bands
reading it (the pairs share 7 query and 7 key/value sets).
"""
from __future__ import annotations

import math

import torch

from .triton_support import available, cdiv, dot_precision, pow2, tl, triton  # noqa: F401 - available() is API

CONFIG = {"block_m": 64, "block_n": 64, "warps": 4}
LOG2E = 1.4426950408889634


if triton is not None:
    @triton.jit
    def _tile(ptr, base, offs, s_stride, S, D, BD: tl.constexpr, T: tl.constexpr):
        """ptr[base + offs * s_stride + j], j < D, for the sequence positions offs < S: a (len(offs), BD) tile,
        or its (BD, len(offs)) transpose when T; zero outside."""
        j = tl.arange(0, BD)
        if T:
            off = offs[None, :] * s_stride + j[:, None]
            ok = (offs < S)[None, :] & (j < D)[:, None]
        else:
            off = offs[:, None] * s_stride + j[None, :]
            ok = (offs < S)[:, None] & (j < D)[None, :]
        return tl.load(ptr + base + off, mask=ok, other=0.0)

    @triton.jit
    def _store_tile(ptr, base, offs, s_stride, S, D, value, BD: tl.constexpr):
        """ptr[base + offs * s_stride + j] = value (len(offs), BD), j < D, offs < S."""
        j = tl.arange(0, BD)
        tl.store(ptr + base + offs[:, None] * s_stride + j[None, :], value.to(ptr.dtype.element_ty),
                 mask=(offs < S)[:, None] & (j < D)[None, :])

    @triton.jit
    def _fwd_kernel(q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, S, H, DK, DV, qk_scale,
                    sq_b, sq_h, sq_s, sk_b, sk_h, sk_s, sv_b, sv_h, sv_s, so_b, so_h, so_s,
                    BM: tl.constexpr, BN: tl.constexpr, BDK: tl.constexpr, BDV: tl.constexpr, PREC: tl.constexpr):
        pid_m, bh = tl.program_id(0), tl.program_id(1)
        b, h = bh // H, bh % H
        offs_m = pid_m * BM + tl.arange(0, BM)
        q = _tile(q_ptr, b * sq_b + h * sq_h, offs_m, sq_s, S, DK, BDK, False)                  # (BM, BDK)
        m_i = tl.full((BM,), float("-inf"), dtype=tl.float32)
        l_i = tl.zeros((BM,), dtype=tl.float32)
        acc = tl.zeros((BM, BDV), dtype=tl.float32)
        hi = tl.minimum((pid_m + 1) * BM, S)
        for start_n in range(0, hi, BN):
            offs_n = start_n + tl.arange(0, BN)
            kt = _tile(k_ptr, b * sk_b + h * sk_h, offs_n, sk_s, S, DK, BDK, True)              # (BDK, BN)
            v = _tile(v_ptr, b * sv_b + h * sv_h, offs_n, sv_s, S, DV, BDV, False)              # (BN, BDV)
            s = tl.dot(q, kt, out_dtype=tl.float32, input_precision=PREC) * qk_scale
            keep = (offs_m[:, None] >= offs_n[None, :]) & (offs_n < S)[None, :]
            s = tl.where(keep, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            p = tl.math.exp2(s - m_new[:, None])
            alpha = tl.math.exp2(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, out_dtype=tl.float32, input_precision=PREC)
            m_i = m_new
        _store_tile(o_ptr, b * so_b + h * so_h, offs_m, so_s, S, DV, acc / l_i[:, None], BDV)
        tl.store(lse_ptr + bh * S + offs_m, m_i + tl.math.log2(l_i), mask=offs_m < S)

    @triton.jit
    def _dkdv_kernel(q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dk_ptr, dv_ptr, S, H, DK, DV, qk_scale,
                     sm_scale, sq_b, sq_h, sq_s, sk_b, sk_h, sk_s, sv_b, sv_h, sv_s, sd_b, sd_h, sd_s,
                     BM: tl.constexpr, BN: tl.constexpr, BDK: tl.constexpr, BDV: tl.constexpr, PREC: tl.constexpr):
        pid_n, bh = tl.program_id(0), tl.program_id(1)
        b, h = bh // H, bh % H
        offs_n = pid_n * BN + tl.arange(0, BN)
        k = _tile(k_ptr, b * sk_b + h * sk_h, offs_n, sk_s, S, DK, BDK, False)                  # (BN, BDK)
        v = _tile(v_ptr, b * sv_b + h * sv_h, offs_n, sv_s, S, DV, BDV, False)                  # (BN, BDV)
        dk = tl.zeros((BN, BDK), dtype=tl.float32)
        dv = tl.zeros((BN, BDV), dtype=tl.float32)
        lo = (pid_n * BN // BM) * BM
        for start_m in range(lo, S, BM):
            offs_m = start_m + tl.arange(0, BM)
            m_ok = offs_m < S
            qt = _tile(q_ptr, b * sq_b + h * sq_h, offs_m, sq_s, S, DK, BDK, True)              # (BDK, BM)
            do = _tile(do_ptr, b * sd_b + h * sd_h, offs_m, sd_s, S, DV, BDV, False)            # (BM, BDV)
            lse = tl.load(lse_ptr + bh * S + offs_m, mask=m_ok, other=0.0)
            delta = tl.load(delta_ptr + bh * S + offs_m, mask=m_ok, other=0.0)
            st = tl.dot(k, qt, out_dtype=tl.float32, input_precision=PREC) * qk_scale             # (BN, BM)
            keep = (offs_m[None, :] >= offs_n[:, None]) & m_ok[None, :]
            pt = tl.where(keep, tl.math.exp2(st - lse[None, :]), 0.0)
            dv += tl.dot(pt.to(do.dtype), do, out_dtype=tl.float32, input_precision=PREC)
            dpt = tl.dot(v, tl.trans(do), out_dtype=tl.float32, input_precision=PREC)             # (BN, BM)
            dst = pt * (dpt - delta[None, :])
            dk += tl.dot(dst.to(qt.dtype), tl.trans(qt), out_dtype=tl.float32, input_precision=PREC)
        _store_tile(dk_ptr, bh * S * DK, offs_n, DK, S, DK, dk * sm_scale, BDK)
        _store_tile(dv_ptr, bh * S * DV, offs_n, DV, S, DV, dv, BDV)

    @triton.jit
    def _dq_kernel(q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dq_ptr, S, H, DK, DV, qk_scale, sm_scale,
                   sq_b, sq_h, sq_s, sk_b, sk_h, sk_s, sv_b, sv_h, sv_s, sd_b, sd_h, sd_s,
                   BM: tl.constexpr, BN: tl.constexpr, BDK: tl.constexpr, BDV: tl.constexpr, PREC: tl.constexpr):
        pid_m, bh = tl.program_id(0), tl.program_id(1)
        b, h = bh // H, bh % H
        offs_m = pid_m * BM + tl.arange(0, BM)
        m_ok = offs_m < S
        q = _tile(q_ptr, b * sq_b + h * sq_h, offs_m, sq_s, S, DK, BDK, False)                  # (BM, BDK)
        do = _tile(do_ptr, b * sd_b + h * sd_h, offs_m, sd_s, S, DV, BDV, False)                # (BM, BDV)
        lse = tl.load(lse_ptr + bh * S + offs_m, mask=m_ok, other=0.0)
        delta = tl.load(delta_ptr + bh * S + offs_m, mask=m_ok, other=0.0)
        dq = tl.zeros((BM, BDK), dtype=tl.float32)
        hi = tl.minimum((pid_m + 1) * BM, S)
        for start_n in range(0, hi, BN):
            offs_n = start_n + tl.arange(0, BN)
            kt = _tile(k_ptr, b * sk_b + h * sk_h, offs_n, sk_s, S, DK, BDK, True)              # (BDK, BN)
            vt = _tile(v_ptr, b * sv_b + h * sv_h, offs_n, sv_s, S, DV, BDV, True)              # (BDV, BN)
            s = tl.dot(q, kt, out_dtype=tl.float32, input_precision=PREC) * qk_scale
            keep = (offs_m[:, None] >= offs_n[None, :]) & (offs_n < S)[None, :]
            p = tl.where(keep, tl.math.exp2(s - lse[:, None]), 0.0)
            dp = tl.dot(do, vt, out_dtype=tl.float32, input_precision=PREC)
            ds = p * (dp - delta[:, None])
            dq += tl.dot(ds.to(kt.dtype), tl.trans(kt), out_dtype=tl.float32, input_precision=PREC)
        _store_tile(dq_ptr, bh * S * DK, offs_m, DK, S, DK, dq * sm_scale, BDK)


def _meta(q: torch.Tensor, v: torch.Tensor) -> dict:
    return {"BDK": pow2(q.shape[-1]), "BDV": pow2(v.shape[-1]), "PREC": dot_precision(q)}


def _unit_last(*ts: torch.Tensor) -> list[torch.Tensor]:
    return [t if t.stride(-1) == 1 else t.contiguous() for t in ts]


@torch.library.custom_op("akira::pair_attention", mutates_args=())
def pair_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal attention: q, k (B, H, S, DK), v (B, H, S, DV) -> (o (B, H, S, DV), lse (B, H, S) fp32, log2)."""
    q, k, v = _unit_last(q, k, v)
    b, h, s, _ = q.shape
    o = torch.empty(b, h, s, v.shape[-1], dtype=q.dtype, device=q.device)
    lse = torch.empty(b, h, s, dtype=torch.float32, device=q.device)
    bm, bn = CONFIG["block_m"], CONFIG["block_n"]
    _fwd_kernel[(cdiv(s, bm), b * h)](
        q, k, v, o, lse, s, h, q.shape[-1], v.shape[-1], scale * LOG2E, *q.stride()[:3], *k.stride()[:3],
        *v.stride()[:3], *o.stride()[:3], BM=bm, BN=bn, num_warps=CONFIG["warps"], **_meta(q, v))
    return o, lse


@pair_attention.register_fake
def _(q, k, v, scale):
    b, h, s, _ = q.shape
    return q.new_empty(b, h, s, v.shape[-1]), q.new_empty(b, h, s, dtype=torch.float32)


@torch.library.custom_op("akira::pair_attention_backward", mutates_args=())
def pair_attention_backward(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor,
                            lse: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv), each contiguous (B, H, S, D)."""
    q, k, v, do = _unit_last(q, k, v, do.to(q.dtype))
    b, h, s, _ = q.shape
    delta = (o.float() * do.float()).sum(-1).contiguous()                                   # (B, H, S)
    dq, dk, dv = (torch.empty(b, h, s, t.shape[-1], dtype=q.dtype, device=q.device) for t in (q, k, v))
    bm, bn = CONFIG["block_m"], CONFIG["block_n"]
    strides = (*q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *do.stride()[:3])
    meta = {"BM": bm, "BN": bn, "num_warps": CONFIG["warps"], **_meta(q, v)}
    args = (s, h, q.shape[-1], v.shape[-1], scale * LOG2E, scale)
    _dkdv_kernel[(cdiv(s, bn), b * h)](q, k, v, do, lse, delta, dk, dv, *args, *strides, **meta)
    _dq_kernel[(cdiv(s, bm), b * h)](q, k, v, do, lse, delta, dq, *args, *strides, **meta)
    return dq, dk, dv


@pair_attention_backward.register_fake
def _(do, q, k, v, o, lse, scale):
    return tuple(t.new_empty(t.shape) for t in (q, k, v))  # contiguous, as the kernels write them


def _setup_context(ctx, inputs, output):
    q, k, v, scale = inputs
    o, lse = output
    ctx.scale = scale
    ctx.save_for_backward(q, k, v, o, lse)


def _backward(ctx, do, _dlse):
    q, k, v, o, lse = ctx.saved_tensors
    dq, dk, dv = pair_attention_backward(do, q, k, v, o, lse, ctx.scale)
    return dq, dk, dv, None


pair_attention.register_autograd(_backward, setup_context=_setup_context)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Causal attention output (B, H, S, DV) of q, k (B, H, S, DK), v (B, H, S, DV)."""
    return pair_attention(q, k, v, float(scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])))[0]
