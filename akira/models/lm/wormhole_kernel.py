"""Fused gated sum over wormhole sources (Triton), forward and backward: `akira::wormhole_gate`.

For every token n, target band i with channels ch (d_i of them) and slot r (source j = (i + offset_r) % nb):
    o   = u[n, r, i] @ W_o[ch].T + b_o[ch]                        u[n, r, i]: the pair's attention output (P = 2c)
    gp  = u[n, r, i] @ W_gf[ch].T + gate_x[n, ch]                 W_gf = W_g,i^o W_o,i (folded), gate_x = W_g^b x + b
    g   = sigmoid(gp) * 1[sigmoid(gp) > threshold]
    y[n, ch] = inv_n[ch] * sum_r slot_on[r, i] * g * o
The unfused version (`CrossBandWormhole._gated_sum_torch`) writes `o` and `gp` of every slot, a `(B, S, R, 2 D)`
tensor (400 MB per layer at batch 64 x 512), to memory and reads it back in several passes, forward and backward;
here each program keeps one token block of one band in registers for all R slots. The backward recomputes `o`,
`gp`, `g` (nothing is saved but the inputs) and writes per-block weight-gradient partials that are summed after
the kernel (deterministic; no atomics).

Layout: ``u`` (B, H, S, P) with H = R * nb slots in order (r, i), any strides with a unit last stride (the
attention output as it comes); ``gate_x`` (B, S, D) contiguous. Runs on CUDA, or on CPU under
``TRITON_INTERPRET=1`` (the tests' reference check). `available()` says whether Triton can be imported.
"""
from __future__ import annotations

import torch

try:  # Triton ships with CUDA builds of torch; the CPU wheel has none
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None

# launch configuration: tokens per program and warps, forward / backward (the backward holds ~9 (BM x BW) fp32
# tiles per program, so it takes fewer tokens). Module-level so that benchmarks/lm_speed.py --micro can compare.
CONFIG = {"fwd_block_m": 64, "fwd_warps": 8, "bwd_block_m": 32, "bwd_warps": 8}


def available() -> bool:
    return triton is not None


def _pow2(n: int, lo: int = 16) -> int:
    return max(lo, 1 << (int(n) - 1).bit_length())


if triton is not None:
    @triton.jit
    def _fwd_kernel(u_ptr, gx_ptr, wo_ptr, wgf_ptr, bo_ptr, on_ptr, inv_ptr, start_ptr, width_ptr, y_ptr,
                    N, S, D, P, threshold, su_b, su_h, su_s,
                    HAS_BO: tl.constexpr, NB: tl.constexpr, R: tl.constexpr, BM: tl.constexpr,
                    BW: tl.constexpr, BP: tl.constexpr, PREC: tl.constexpr):
        pid_m, band = tl.program_id(0), tl.program_id(1)
        start, width = tl.load(start_ptr + band), tl.load(width_ptr + band)
        rows = pid_m * BM + tl.arange(0, BM)
        row_ok = rows < N
        u_row = (rows // S) * su_b + (rows % S) * su_s                       # (BM,) offset of token n in u
        cols = tl.arange(0, BW)
        col_ok = cols < width
        ch = start + cols
        ks = tl.arange(0, BP)
        k_ok = ks < P
        dt = u_ptr.dtype.element_ty
        w_off = ch[None, :] * P + ks[:, None]                                # (BP, BW): W[ch, k] transposed
        w_ok = k_ok[:, None] & col_ok[None, :]
        wo_t = tl.load(wo_ptr + w_off, mask=w_ok, other=0.0).to(dt)
        wgf_t = tl.load(wgf_ptr + w_off, mask=w_ok, other=0.0).to(dt)
        io_ok = row_ok[:, None] & col_ok[None, :]
        io_off = rows[:, None] * D + ch[None, :]
        gx = tl.load(gx_ptr + io_off, mask=io_ok, other=0.0).to(tl.float32)
        if HAS_BO:
            bo = tl.load(bo_ptr + ch, mask=col_ok, other=0.0).to(tl.float32)
        acc = tl.zeros((BM, BW), dtype=tl.float32)
        for r in tl.static_range(R):
            h = r * NB + band
            on = tl.load(on_ptr + h)
            u = tl.load(u_ptr + u_row[:, None] + h * su_h + ks[None, :], mask=row_ok[:, None] & k_ok[None, :],
                        other=0.0)
            o = tl.dot(u, wo_t, out_dtype=tl.float32, input_precision=PREC)
            if HAS_BO:
                o = o + bo[None, :]
            g = tl.sigmoid(tl.dot(u, wgf_t, out_dtype=tl.float32, input_precision=PREC) + gx)
            acc += tl.where((g > threshold) & (on != 0), g * o, 0.0)
        inv = tl.load(inv_ptr + ch, mask=col_ok, other=0.0)
        tl.store(y_ptr + io_off, (acc * inv[None, :]).to(y_ptr.dtype.element_ty), mask=io_ok)

    @triton.jit
    def _bwd_kernel(u_ptr, gx_ptr, wo_ptr, wgf_ptr, bo_ptr, on_ptr, inv_ptr, start_ptr, width_ptr, dy_ptr,
                    du_ptr, dgx_ptr, dwo_ptr, dwgf_ptr, dbo_ptr,
                    N, S, D, P, threshold, su_b, su_h, su_s, sd_b, sd_h, sd_s,
                    HAS_BO: tl.constexpr, NB: tl.constexpr, R: tl.constexpr, BM: tl.constexpr,
                    BW: tl.constexpr, BP: tl.constexpr, PREC: tl.constexpr):
        pid_m, band = tl.program_id(0), tl.program_id(1)
        start, width = tl.load(start_ptr + band), tl.load(width_ptr + band)
        rows = pid_m * BM + tl.arange(0, BM)
        row_ok = rows < N
        u_row = (rows // S) * su_b + (rows % S) * su_s
        du_row = (rows // S) * sd_b + (rows % S) * sd_s
        cols = tl.arange(0, BW)
        col_ok = cols < width
        ch = start + cols
        ks = tl.arange(0, BP)
        k_ok = ks < P
        dt = u_ptr.dtype.element_ty
        w_off = ch[None, :] * P + ks[:, None]
        w_ok = k_ok[:, None] & col_ok[None, :]
        wo_t = tl.load(wo_ptr + w_off, mask=w_ok, other=0.0).to(dt)         # (BP, BW)
        wgf_t = tl.load(wgf_ptr + w_off, mask=w_ok, other=0.0).to(dt)
        io_ok = row_ok[:, None] & col_ok[None, :]
        io_off = rows[:, None] * D + ch[None, :]
        gx = tl.load(gx_ptr + io_off, mask=io_ok, other=0.0).to(tl.float32)
        inv = tl.load(inv_ptr + ch, mask=col_ok, other=0.0)
        dy = tl.load(dy_ptr + io_off, mask=io_ok, other=0.0).to(tl.float32) * inv[None, :]
        if HAS_BO:
            bo = tl.load(bo_ptr + ch, mask=col_ok, other=0.0).to(tl.float32)
        dgx = tl.zeros((BM, BW), dtype=tl.float32)
        dwo = tl.zeros((BP, BW), dtype=tl.float32)
        dwgf = tl.zeros((BP, BW), dtype=tl.float32)
        dbo = tl.zeros((BW,), dtype=tl.float32)
        u_ok = row_ok[:, None] & k_ok[None, :]
        for r in tl.static_range(R):
            h = r * NB + band
            on = tl.load(on_ptr + h)
            u = tl.load(u_ptr + u_row[:, None] + h * su_h + ks[None, :], mask=u_ok, other=0.0)
            o = tl.dot(u, wo_t, out_dtype=tl.float32, input_precision=PREC)
            if HAS_BO:
                o = o + bo[None, :]
            g = tl.sigmoid(tl.dot(u, wgf_t, out_dtype=tl.float32, input_precision=PREC) + gx)
            keep = (g > threshold) & (on != 0)
            d_o = tl.where(keep, dy * g, 0.0)
            d_gp = tl.where(keep, dy * o * g * (1.0 - g), 0.0)
            d_o_c, d_gp_c = d_o.to(dt), d_gp.to(dt)
            du = (tl.dot(d_o_c, tl.trans(wo_t), out_dtype=tl.float32, input_precision=PREC)
                  + tl.dot(d_gp_c, tl.trans(wgf_t), out_dtype=tl.float32, input_precision=PREC))
            tl.store(du_ptr + du_row[:, None] + h * sd_h + ks[None, :], du.to(du_ptr.dtype.element_ty), mask=u_ok)
            dgx += d_gp
            ut = tl.trans(u)
            dwo += tl.dot(ut, d_o_c, out_dtype=tl.float32, input_precision=PREC)
            dwgf += tl.dot(ut, d_gp_c, out_dtype=tl.float32, input_precision=PREC)
            dbo += tl.sum(d_o, 0)
        tl.store(dgx_ptr + io_off, dgx.to(dgx_ptr.dtype.element_ty), mask=io_ok)
        part = pid_m * D * P
        tl.store(dwo_ptr + part + w_off, dwo, mask=w_ok)
        tl.store(dwgf_ptr + part + w_off, dwgf, mask=w_ok)
        if HAS_BO:
            tl.store(dbo_ptr + pid_m * D + ch, dbo, mask=col_ok)


def _meta(u: torch.Tensor, gate_x: torch.Tensor, starts: torch.Tensor, widths: torch.Tensor) -> dict:
    b, h, s, p = u.shape
    nb = starts.numel()
    return {"N": b * s, "S": s, "D": gate_x.shape[-1], "P": p, "NB": nb, "R": h // nb,
            "BW": _pow2(int(widths.max())), "BP": _pow2(p),
            "PREC": "ieee" if u.dtype == torch.float32 else "tf32"}  # fp32 runs exact, not TF32


@torch.library.custom_op("akira::wormhole_gate", mutates_args=())
def wormhole_gate(u: torch.Tensor, gate_x: torch.Tensor, w_o: torch.Tensor, w_gf: torch.Tensor,
                  b_o: torch.Tensor | None, slot_on: torch.Tensor, inv_n: torch.Tensor, starts: torch.Tensor,
                  widths: torch.Tensor, threshold: float) -> torch.Tensor:
    """u (B, H, S, P), gate_x (B, S, D) -> y (B, S, D) in u's dtype (see the module docstring)."""
    if u.stride(-1) != 1:
        u = u.contiguous()
    gate_x = gate_x.contiguous()
    m = _meta(u, gate_x, starts, widths)
    y = torch.empty(gate_x.shape, dtype=u.dtype, device=u.device)
    bm = CONFIG["fwd_block_m"]
    grid = (triton.cdiv(m["N"], bm), m["NB"])
    _fwd_kernel[grid](u, gate_x, w_o, w_gf, b_o if b_o is not None else w_o, slot_on, inv_n, starts, widths, y,
                      m["N"], m["S"], m["D"], m["P"], threshold, u.stride(0), u.stride(1), u.stride(2),
                      HAS_BO=b_o is not None, NB=m["NB"], R=m["R"], BM=bm, BW=m["BW"], BP=m["BP"],
                      PREC=m["PREC"], num_warps=CONFIG["fwd_warps"])
    return y


@wormhole_gate.register_fake
def _(u, gate_x, w_o, w_gf, b_o, slot_on, inv_n, starts, widths, threshold):
    return gate_x.new_empty(gate_x.shape, dtype=u.dtype)


@torch.library.custom_op("akira::wormhole_gate_backward", mutates_args=())
def wormhole_gate_backward(dy: torch.Tensor, u: torch.Tensor, gate_x: torch.Tensor, w_o: torch.Tensor,
                           w_gf: torch.Tensor, b_o: torch.Tensor | None, slot_on: torch.Tensor, inv_n: torch.Tensor,
                           starts: torch.Tensor, widths: torch.Tensor, threshold: float
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (du, d gate_x, d w_o, d w_gf, d b_o); d b_o is zeros((0,)) without a bias."""
    if u.stride(-1) != 1:
        u = u.contiguous()
    gate_x, dy = gate_x.contiguous(), dy.contiguous()
    m = _meta(u, gate_x, starts, widths)
    bm = CONFIG["bwd_block_m"]
    n_blocks = triton.cdiv(m["N"], bm)
    du = torch.empty_like(u)
    dgx = torch.empty_like(gate_x)
    f32 = {"dtype": torch.float32, "device": u.device}
    dwo = torch.zeros(n_blocks, m["D"], m["P"], **f32)
    dwgf = torch.zeros(n_blocks, m["D"], m["P"], **f32)
    dbo = torch.zeros(n_blocks, m["D"], **f32) if b_o is not None else torch.zeros(1, 1, **f32)
    _bwd_kernel[(n_blocks, m["NB"])](
        u, gate_x, w_o, w_gf, b_o if b_o is not None else w_o, slot_on, inv_n, starts, widths, dy,
        du, dgx, dwo, dwgf, dbo, m["N"], m["S"], m["D"], m["P"], threshold,
        u.stride(0), u.stride(1), u.stride(2), du.stride(0), du.stride(1), du.stride(2),
        HAS_BO=b_o is not None, NB=m["NB"], R=m["R"], BM=bm, BW=m["BW"], BP=m["BP"], PREC=m["PREC"],
        num_warps=CONFIG["bwd_warps"])
    d_bo = dbo.sum(0).to(b_o.dtype) if b_o is not None else u.new_zeros(0)
    return du, dgx, dwo.sum(0).to(w_o.dtype), dwgf.sum(0).to(w_gf.dtype), d_bo


@wormhole_gate_backward.register_fake
def _(dy, u, gate_x, w_o, w_gf, b_o, slot_on, inv_n, starts, widths, threshold):
    d_bo = b_o.new_empty(b_o.shape) if b_o is not None else u.new_empty(0)
    return torch.empty_like(u), torch.empty_like(gate_x), torch.empty_like(w_o), torch.empty_like(w_gf), d_bo


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:9])
    ctx.threshold = inputs[9]
    ctx.has_bo = inputs[4] is not None


def _backward(ctx, dy):
    u, gate_x, w_o, w_gf, b_o, slot_on, inv_n, starts, widths = ctx.saved_tensors
    du, dgx, dwo, dwgf, dbo = wormhole_gate_backward(dy, u, gate_x, w_o, w_gf, b_o if ctx.has_bo else None,
                                                     slot_on, inv_n, starts, widths, ctx.threshold)
    return du, dgx, dwo, dwgf, (dbo if ctx.has_bo else None), None, None, None, None, None


wormhole_gate.register_autograd(_backward, setup_context=_setup_context)
