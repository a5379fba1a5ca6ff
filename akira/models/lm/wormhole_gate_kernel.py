"""The wormhole's gated sum over sources as one Triton op, forward and backward: `akira::wormhole_gate`.

For every token n, target band i (channels ch, d_i of them) and slot r (source j = (i + offset_r) % nb):
    o   = u[n, r, i] @ W_o[ch].T + b_o[ch]                         u[n, r, i]: the pair's attention output (P = 2c)
    gp  = u[n, r, i] @ W_gf[ch].T + gate_x[n, ch]                  W_gf = W_g,i^o W_o,i, gate_x = W_g^b x + b
    g   = sigmoid(gp) * 1[sigmoid(gp) > threshold]
    y[n, ch] = (1 / n_src(i)) * sum_r on[r, i] * g * o
The torch path (`CrossBandWormhole._gated_sum`) writes o and gp of every slot, a `(B, S, R, 2 D)` tensor (400 MB
per layer at batch 64 x 512, from a block-diagonal matmul that multiplies 7x the needed zeros) and reads it back
in several elementwise passes, forward and backward. Here one program holds one token block of one band for all
R slots: the forward writes only y, the backward recomputes o, gp and g from u (nothing else is saved) and writes
du, d gate_x and per-program weight-gradient partials, summed after the kernel (deterministic; no atomics).

Bands are launched in groups of equal padded width (one launch per power of two >= the widths, as the fused band
MLP does), so a 32-wide band does not run 128-wide tiles. o and gp are fp32 accumulations of bf16 (or fp32,
exact) products; the torch path under autocast rounds them to bf16 first, so the two agree up to that rounding
and the hard gate's flips at the threshold it causes.

Layout: ``u`` (B, H, S, P) with H = R * nb slots in order (r, i), any strides with a unit last stride (the
attention output as it comes); ``gate_x`` (B, S, D). Runs on CUDA, or on CPU under ``TRITON_INTERPRET=1`` (the
tests' reference check). H200, one layer at batch 64 x 512, bf16: forward 0.27 + backward 0.71 ms of kernels vs
1.31 ms for the compiled torch path; the full arm's step 46.7 vs 48.5 ms, peak memory 17.0 vs 19.3 GB
(benchmarks/RESULTS.md). An earlier version with one 128-wide launch for all bands and a branch per slot (git
53865ea) was slower than the torch path (3.3 vs 2.1 ms per layer in a host-bound harness).
"""
from __future__ import annotations

import torch

from .triton_support import CachedLaunch, available, cdiv, dot_precision, pow2, tl, triton  # noqa: F401 - API

# Launch settings. A program's token block is sized so that each thread holds `*_elems` elements of one
# (tokens x channels) fp32 tile: the slots' loads are issued early (no branch between them), so more spills to
# local memory (sm_90 SASS, offline count: none at these settings but for the 32-wide backward); the backward's
# 128-wide and wider groups run 8 warps, the rest 4. A backward program walks `bwd_blocks` token blocks and keeps
# its weight-gradient sums in registers across them (fewer partials to write and add). Module-level so that
# benchmarks/lm_speed.py --micro can compare settings.
CONFIG = {"fwd_elems": 16, "fwd_warps": 4, "bwd_elems": 8, "bwd_wide_warps": 8, "bwd_blocks": 8}


def launch_config(kernel: str, width: int) -> tuple[int, int]:
    """(tokens per block, warps) of ``kernel`` ("fwd" or "bwd") for a launch group of padded width ``width``."""
    if kernel == "fwd":
        warps, elems, most = CONFIG["fwd_warps"], CONFIG["fwd_elems"], 128
    else:
        warps, elems, most = (CONFIG["bwd_wide_warps"] if width >= 128 else 4), CONFIG["bwd_elems"], 64
    return max(16, min(most, elems * 32 * warps // width)), warps


if triton is not None:
    @triton.jit
    def _band(tab_ptr, pid_band):
        """(band, first channel, width, 1 / n_src) of the launch group's pid_band-th band."""
        band = tl.load(tab_ptr + 4 * pid_band)
        n_src = tl.load(tab_ptr + 4 * pid_band + 3)
        inv = tl.where(n_src > 0, 1.0 / tl.maximum(n_src, 1).to(tl.float32), 0.0)
        return band, tl.load(tab_ptr + 4 * pid_band + 1), tl.load(tab_ptr + 4 * pid_band + 2), inv

    @triton.jit
    def _u_rows(rows, S, s_b, s_s):
        """Offsets of tokens `rows` (flat b * S + s) in a (B, ., S, .) tensor of batch / sequence strides."""
        return (rows // S) * s_b + (rows % S) * s_s

    @triton.jit
    def _fwd_kernel(u_ptr, gx_ptr, wo_ptr, wgf_ptr, bo_ptr, on_ptr, tab_ptr, y_ptr,
                    N, S, D, threshold, su_b, su_h, su_s, group_off,
                    HAS_BO: tl.constexpr, NB: tl.constexpr, R: tl.constexpr, P: tl.constexpr, BP: tl.constexpr,
                    BM: tl.constexpr, BW: tl.constexpr, PREC: tl.constexpr):
        pid_m, pid_band = tl.program_id(0), tl.program_id(1) + group_off
        band, start, width, inv = _band(tab_ptr, pid_band)
        rows = pid_m * BM + tl.arange(0, BM)
        row_ok = rows < N
        cols = tl.arange(0, BW)
        col_ok = cols < width
        ch = start + cols
        ks = tl.arange(0, BP)
        k_ok = ks < P
        dt = u_ptr.dtype.element_ty
        w_off = ch[None, :] * P + ks[:, None]                                 # (BP, BW): W[ch, k] transposed
        w_ok = k_ok[:, None] & col_ok[None, :]
        wo_t = tl.load(wo_ptr + w_off, mask=w_ok, other=0.0)
        wgf_t = tl.load(wgf_ptr + w_off, mask=w_ok, other=0.0)
        io_ok = row_ok[:, None] & col_ok[None, :]
        io_off = rows[:, None] * D + ch[None, :]
        gx = tl.load(gx_ptr + io_off, mask=io_ok, other=0.0).to(tl.float32)
        u_base = u_ptr + _u_rows(rows, S, su_b, su_s)[:, None] + ks[None, :]
        u_ok = row_ok[:, None] & k_ok[None, :]
        if HAS_BO:
            bo = tl.load(bo_ptr + ch, mask=col_ok, other=0.0).to(tl.float32)
        acc = tl.zeros((BM, BW), dtype=tl.float32)
        for r in tl.static_range(R):   # no branch on the slot's flag: the slots' loads can be issued early
            h = r * NB + band
            on = tl.load(on_ptr + h).to(tl.float32)
            u = tl.load(u_base + h * su_h, mask=u_ok, other=0.0).to(dt)
            o = tl.dot(u, wo_t, out_dtype=tl.float32, input_precision=PREC)
            if HAS_BO:
                o += bo[None, :]
            g = tl.sigmoid(tl.dot(u, wgf_t, out_dtype=tl.float32, input_precision=PREC) + gx)
            acc += tl.where(g > threshold, g * o, 0.0) * on
        tl.store(y_ptr + io_off, (acc * inv).to(y_ptr.dtype.element_ty), mask=io_ok)

    @triton.jit
    def _bwd_kernel(u_ptr, gx_ptr, wo_ptr, wgf_ptr, bo_ptr, on_ptr, tab_ptr, dy_ptr,
                    du_ptr, dgx_ptr, dwo_ptr, dwgf_ptr, dbo_ptr,
                    N, S, D, threshold, su_b, su_h, su_s, sd_b, sd_h, sd_s, group_off, n_blocks,
                    HAS_BO: tl.constexpr, NB: tl.constexpr, R: tl.constexpr, P: tl.constexpr, BP: tl.constexpr,
                    BM: tl.constexpr, BW: tl.constexpr, BLOCKS: tl.constexpr, PREC: tl.constexpr):
        pid_p, pid_band = tl.program_id(0), tl.program_id(1) + group_off
        band, start, width, inv = _band(tab_ptr, pid_band)
        cols = tl.arange(0, BW)
        col_ok = cols < width
        ch = start + cols
        ks = tl.arange(0, BP)
        k_ok = ks < P
        dt = u_ptr.dtype.element_ty
        w_off_t = ch[None, :] * P + ks[:, None]                               # (BP, BW)
        w_ok_t = k_ok[:, None] & col_ok[None, :]
        w_off = ch[:, None] * P + ks[None, :]                                 # (BW, BP)
        w_ok = col_ok[:, None] & k_ok[None, :]
        wo_t = tl.load(wo_ptr + w_off_t, mask=w_ok_t, other=0.0)
        wgf_t = tl.load(wgf_ptr + w_off_t, mask=w_ok_t, other=0.0)
        wo = tl.load(wo_ptr + w_off, mask=w_ok, other=0.0)
        wgf = tl.load(wgf_ptr + w_off, mask=w_ok, other=0.0)
        if HAS_BO:
            bo = tl.load(bo_ptr + ch, mask=col_ok, other=0.0).to(tl.float32)
        dwo = tl.zeros((BP, BW), dtype=tl.float32)
        dwgf = tl.zeros((BP, BW), dtype=tl.float32)
        dbo = tl.zeros((BM, BW), dtype=tl.float32)                           # summed over rows at the end
        for blk in range(pid_p * BLOCKS, tl.minimum(pid_p * BLOCKS + BLOCKS, n_blocks)):
            rows = blk * BM + tl.arange(0, BM)
            row_ok = rows < N
            u_ok = row_ok[:, None] & k_ok[None, :]
            io_ok = row_ok[:, None] & col_ok[None, :]
            io_off = rows[:, None] * D + ch[None, :]
            gx = tl.load(gx_ptr + io_off, mask=io_ok, other=0.0).to(tl.float32)
            dy = tl.load(dy_ptr + io_off, mask=io_ok, other=0.0).to(tl.float32) * inv
            u_off = _u_rows(rows, S, su_b, su_s)
            du_base = du_ptr + _u_rows(rows, S, sd_b, sd_s)[:, None] + ks[None, :]
            dgx = tl.zeros((BM, BW), dtype=tl.float32)
            for r in tl.static_range(R):   # no branch on the slot's flag (see the forward)
                h = r * NB + band
                dy_on = dy * tl.load(on_ptr + h).to(tl.float32)
                u = tl.load(u_ptr + u_off[:, None] + h * su_h + ks[None, :], mask=u_ok, other=0.0).to(dt)
                ut = tl.load(u_ptr + u_off[None, :] + h * su_h + ks[:, None], mask=tl.trans(u_ok),
                             other=0.0).to(dt)                                            # (BP, BM), from L1
                o = tl.dot(u, wo_t, out_dtype=tl.float32, input_precision=PREC)
                if HAS_BO:
                    o += bo[None, :]
                g = tl.sigmoid(tl.dot(u, wgf_t, out_dtype=tl.float32, input_precision=PREC) + gx)
                dg_o = tl.where(g > threshold, dy_on * g, 0.0)                               # d o
                d_gp = dg_o * o * (1.0 - g)                                                  # dy o g (1 - g)
                d_o16, d_gp16 = dg_o.to(dt), d_gp.to(dt)
                du = tl.dot(d_o16, wo, out_dtype=tl.float32, input_precision=PREC)
                du = tl.dot(d_gp16, wgf, acc=du, out_dtype=tl.float32, input_precision=PREC)
                tl.store(du_base + h * sd_h, du.to(du_ptr.dtype.element_ty), mask=u_ok)
                dgx += d_gp
                dwo = tl.dot(ut, d_o16, acc=dwo, out_dtype=tl.float32, input_precision=PREC)
                dwgf = tl.dot(ut, d_gp16, acc=dwgf, out_dtype=tl.float32, input_precision=PREC)
                if HAS_BO:
                    dbo += dg_o
            tl.store(dgx_ptr + io_off, dgx.to(dgx_ptr.dtype.element_ty), mask=io_ok)
        part = pid_p * D * P
        tl.store(dwo_ptr + part + w_off_t, dwo, mask=w_ok_t)
        tl.store(dwgf_ptr + part + w_off_t, dwgf, mask=w_ok_t)
        if HAS_BO:
            tl.store(dbo_ptr + pid_p * D + ch, tl.sum(dbo, 0), mask=col_ok)

    _fwd = CachedLaunch(_fwd_kernel)
    _bwd = CachedLaunch(_bwd_kernel)


def band_table(widths: list[int] | tuple[int, ...], slot_on: torch.Tensor) -> tuple[torch.Tensor, list[list[int]]]:
    """The kernels' band table and launch groups for bands of ``widths`` and slot flags ``slot_on`` (R, nb).

    Table (nb, 4) int32, rows ordered by launch group: [band, first channel, width, number of sources]; groups:
    [padded width, first row, rows] per launch (bands of equal power-of-two width share one)."""
    starts = [sum(widths[:i]) for i in range(len(widths))]
    n_src = slot_on.sum(0).tolist()
    order = sorted(range(len(widths)), key=lambda i: (-pow2(widths[i]), i))
    rows = [[i, starts[i], widths[i], int(n_src[i])] for i in order]
    groups: list[list[int]] = []
    for k, i in enumerate(order):
        if groups and groups[-1][0] == pow2(widths[i]):
            groups[-1][2] += 1
        else:
            groups.append([pow2(widths[i]), k, 1])
    return torch.tensor(rows, dtype=torch.int32), groups


def _unit_last(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


@torch.library.custom_op("akira::wormhole_gate", mutates_args=())
def wormhole_gate(u: torch.Tensor, gate_x: torch.Tensor, w_o: torch.Tensor, w_gf: torch.Tensor,
                  b_o: torch.Tensor | None, slot_on: torch.Tensor, table: torch.Tensor, groups: list[int],
                  threshold: float) -> torch.Tensor:
    """y (B, S, D) from u (B, R * nb, S, P), gate_x (B, S, D), w_o / w_gf (D, P) in u's dtype, b_o (D,) or None;
    ``slot_on`` (R * nb,) int32 in slot order, ``table``/``groups`` from `band_table` (groups flattened)."""
    u, gate_x = _unit_last(u), gate_x.contiguous()
    b, h, s, p = u.shape
    d, n = gate_x.shape[-1], b * s
    y = torch.empty(b, s, d, dtype=gate_x.dtype, device=u.device)
    nb = table.shape[0]
    for bw, off, cnt in zip(groups[0::3], groups[1::3], groups[2::3]):
        bm, warps = launch_config("fwd", bw)
        _fwd((cdiv(n, bm), cnt), u, gate_x, w_o, w_gf, b_o if b_o is not None else w_o, slot_on, table, y,
             n, s, d, threshold, u.stride(0), u.stride(1), u.stride(2), off,
             HAS_BO=b_o is not None, NB=nb, R=h // nb, P=p, BP=pow2(p), BM=bm, BW=bw, PREC=dot_precision(u),
             num_warps=warps)
    return y


@wormhole_gate.register_fake
def _(u, gate_x, w_o, w_gf, b_o, slot_on, table, groups, threshold):
    return gate_x.new_empty(gate_x.shape)


@torch.library.custom_op("akira::wormhole_gate_backward", mutates_args=())
def wormhole_gate_backward(dy: torch.Tensor, u: torch.Tensor, gate_x: torch.Tensor, w_o: torch.Tensor,
                           w_gf: torch.Tensor, b_o: torch.Tensor | None, slot_on: torch.Tensor, table: torch.Tensor,
                           groups: list[int], threshold: float
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(du (B, H, S, P) with u's strides, d gate_x (B, S, D), dW_o (D, P) fp32, dW_gf (D, P) fp32, db_o (D,) fp32 (zeros without
    b_o))."""
    u, gate_x, dy = _unit_last(u), gate_x.contiguous(), dy.contiguous()
    b, h, s, p = u.shape
    d, n = gate_x.shape[-1], b * s
    blocks, nb = CONFIG["bwd_blocks"], table.shape[0]
    launches = [(bw, off, cnt, *launch_config("bwd", bw)) for bw, off, cnt in zip(groups[0::3], groups[1::3],
                                                                                    groups[2::3])]
    progs = max(cdiv(cdiv(n, bm), blocks) for *_, bm, _ in launches)    # partial sums: rows of programs
    du = torch.empty_like(u)   # u's strides: with du contiguous, cuDNN's attention backward gave wrong gradients
    # for 64-wide value heads on an H200 (benchmarks/RESULTS.md); dO laid out as O avoids it
    dgx = torch.empty_like(gate_x)
    dwo = torch.zeros(progs, d, p, dtype=torch.float32, device=u.device)
    dwgf = torch.zeros(progs, d, p, dtype=torch.float32, device=u.device)
    dbo = torch.zeros(progs, d, dtype=torch.float32, device=u.device)
    for bw, off, cnt, bm, warps in launches:
        n_blocks = cdiv(n, bm)
        _bwd((cdiv(n_blocks, blocks), cnt), u, gate_x, w_o, w_gf, b_o if b_o is not None else w_o, slot_on, table, dy,
             du, dgx, dwo, dwgf, dbo, n, s, d, threshold, u.stride(0), u.stride(1), u.stride(2),
             du.stride(0), du.stride(1), du.stride(2), off, n_blocks,
             HAS_BO=b_o is not None, NB=nb, R=h // nb, P=p, BP=pow2(p), BM=bm, BW=bw, BLOCKS=blocks,
             PREC=dot_precision(u), num_warps=warps)
    return du, dgx, dwo.sum(0), dwgf.sum(0), dbo.sum(0)


@wormhole_gate_backward.register_fake
def _(dy, u, gate_x, w_o, w_gf, b_o, slot_on, table, groups, threshold):
    d, p = gate_x.shape[-1], u.shape[-1]
    f32 = torch.float32
    return (torch.empty_like(_unit_last(u)), gate_x.new_empty(gate_x.shape), u.new_empty(d, p, dtype=f32),
            u.new_empty(d, p, dtype=f32), u.new_empty(d, dtype=f32))


def _setup_context(ctx, inputs, output):
    u, gate_x, w_o, w_gf, b_o, slot_on, table, groups, threshold = inputs
    ctx.has_bo = b_o is not None
    ctx.args = (groups, threshold)
    ctx.save_for_backward(u, gate_x, w_o, w_gf, b_o, slot_on, table)


def _backward(ctx, dy):
    u, gate_x, w_o, w_gf, b_o, slot_on, table = ctx.saved_tensors
    du, dgx, dwo, dwgf, dbo = wormhole_gate_backward(dy, u, gate_x, w_o, w_gf, b_o, slot_on, table, *ctx.args)
    return (du, dgx, dwo.to(w_o.dtype), dwgf.to(w_gf.dtype), dbo.to(b_o.dtype) if ctx.has_bo else None,
            None, None, None, None)


wormhole_gate.register_autograd(_backward, setup_context=_setup_context)
