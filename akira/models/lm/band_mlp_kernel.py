"""Fused per-band MLP (Triton): ``y[:, band i] = W2_i gelu(W1_i LN_i(x[:, band i]) + b1_i) + b2_i`` for all bands,
with the hidden units kept on chip and each band's LayerNorm LN_i applied inside the kernels (`band_mlp` around
the op `akira::band_mlp_packed`, forward and backward).

Why: at the params-matched expansion (~24) the band MLPs have the dense MLP's FLOPs but 6x its hidden activations
(12,288 per token), whose round trips through memory (fc1 output, GELU in/out, saved for the backward) and whose
small-K/N GEMMs (band widths 32-128) dominate the `*_matched` arms' step (benchmarks/RESULTS.md). Measured on an
H200 (batch 64 x 512, bf16, compiled): no_wormhole_matched 36.5-36.9 ms per step (baselines 28.0 / 27.2 in the
same runs, two machines; 38.9 with the GELU in fp32) vs 65 for the per-band loop, at 13.2 vs 23.3 GB peak (no
hidden activations are kept). Kernel time per layer (e~24, 32k tokens, LayerNorm included): forward 0.52 ms, dx
0.68, dW 0.90 (0.60, 0.74 and 1.04 with the fp32 GELU). Here:
- bands of the same padded width (`pow2(d)`) share one launch of each kernel (a band table in device memory,
  `BandMLP`'s buffer, gives each program its band), so the small bands' programs fill the big bands' last waves;
  the weights are packed into one buffer per matrix, W2 transposed so that every weight tile is read along the
  band's channels, each band's hidden units padded with zeros to a multiple of `H_ALIGN` so that every hidden
  tile is whole (no masks along the hidden units). The backward kernels are bound by instruction issue (counted
  in the compiled SASS, `benchmarks/band_mlp_sass_count.py`: 15-24 instructions per hidden unit and kernel with
  the packed-bf16 GELU, 20-26 with the fp32 one), so their code avoids every instruction per unit it can
  (RESULTS.md). Tiling the 96/80/48-wide bands as two unpadded channel tiles was slower
  (commit 2feb7f1). The op allocates only its outputs, so it runs under CUDA graphs (compile mode
  reduce-overhead: tested; not faster, benchmarks/RESULTS.md).
- the band LayerNorms (optional: ``norm``): the forward kernel normalises its (tokens x band) tile of the
  residual stream (statistics in fp32) and saves the normalised input (in the weights' dtype) for the backward;
  the dx kernel ends with the LayerNorm's backward (statistics recomputed from x) and writes per-token-block
  partial sums of its weight and bias gradients. So no separate LayerNorm kernels run and its output is read
  from memory only by the backward.
- forward: one program per (token block, band) loops over the band's hidden units in tiles:
  ``acc += gelu(x W1_tile^T + b1_tile) W2_tile^T``; nothing of size hidden is written.
- backward, like flash attention's: recompute ``pre = x W1^T + b1`` tile by tile; one kernel gives ``dx``
  (programs over token blocks), one gives ``dW1, db1, dW2`` (programs over (band, hidden tile) x token splits,
  per-split partials; deterministic, no atomics). The partial sums are summed, and b2 added (and its gradient
  formed), in torch, as are the packing of the weights and the split of their packed gradients (`band_mlp`,
  `_backward`), so that under torch.compile all that runs in the compiled graph as a few fused kernels.
- dropout on the hidden units (as `BandMLP`'s other paths apply it after the GELU): Philox random numbers from a
  seed tensor and each (band, token, hidden unit), one Philox call per eight units, regenerated in the backward
  kernels, so no mask is stored (the mask does not depend on the tiling: tested).
- launches go through `triton_support.CachedLaunch` (less host time per launch than Triton's own path: the
  op's forward + backward took 2.8 vs 4.2 ms of host time per call, H200 host), since the matched arms' steps
  leave the GPU idle while the host launches.
GELU is the exact (erf) form, as `F.gelu`, to 2.1e-7 (`_tail_and_density`), in fp32; with bf16 weights the
kernels evaluate it (and the backward its derivative) in packed bf16 arithmetic instead (`_act_dpre16`,
``gelu16``/`model.fused_bf16_gelu`, on by default: two hidden units per instruction; as accurate as the per-band
loop under bf16 autocast, which rounds the pre-activations to bf16 before its GELU: tested). Matmuls take the
weights' dtype (bf16 under autocast) with fp32 accumulation; fp32 weights run exact (no TF32). Runs on CUDA, or
on CPU under ``TRITON_INTERPRET=1`` (the tests' check against the per-band reference).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from .triton_support import (  # noqa: F401 - available() is API
    CachedLaunch,
    available,
    cdiv,
    dot_precision,
    interpreted,
    pow2,
    tl,
    triton,
)

# Launch configuration (module-level so that benchmarks/lm_speed.py --micro can compare several): one launch per
# padded band width (grouped=1) or per band (0); the dW kernel's token splits (per-split partials summed
# afterwards); per kernel (prefix "" = forward, "dx_", "dw_"): token block, hidden tile, warps, pipeline stages.
# With tuned=1 the launches of a group of padded width BD take TUNED[BD]'s settings over these (the fastest
# measured for that width by benchmarks/band_mlp_tune.py at the params-matched expansion: forward 0.52 + backward
# 1.57 ms per layer over all groups (H200), vs 0.65 + 2.09 with CONFIG's settings).
CONFIG = {"grouped": 1, "tuned": 1, "dw_splits": 8,
          "block_m": 64, "block_h": 32, "warps": 4, "stages": 2,
          "dx_block_m": 64, "dx_block_h": 32, "dx_warps": 4, "dx_stages": 2,
          "dw_block_m": 64, "dw_block_h": 32, "dw_warps": 4, "dw_stages": 2}
TUNED: dict[int, dict[str, int]] = {  # H200, Triton 3.6, LayerNorm in the kernels, unmasked hidden tiles, the
    # packed-bf16 GELU (results/2026-12-03/band_mlp_tuned_fwd_gelu16_h200.json, band_mlp_tuned_gelu16_h200.json);
    # only the settings that differ from CONFIG's
    128: {"block_h": 64, "stages": 3, "dx_block_h": 64, "dw_block_h": 64},
    64: {"block_h": 128, "dx_block_h": 64, "dx_stages": 3, "dw_block_h": 64, "dw_stages": 3},
    32: {"block_m": 128, "block_h": 64, "warps": 8, "dx_block_m": 128, "dx_warps": 8, "dw_block_m": 128},
}
H_ALIGN = 128   # the packed weights pad each band's hidden units with zeros to a multiple of this (every block_h
# divides it), so every hidden tile is whole: the kernels' loops load weights and biases without masks along the
# hidden units (fewer instructions per unit, which made the backward kernels faster: RESULTS.md)
KERNELS = {"fwd": "", "dx": "dx_", "dw": "dw_"}   # kernel -> prefix of its CONFIG / TUNED keys
SETTINGS = ("block_m", "block_h", "warps", "stages")


def override_config(spec: str) -> None:
    """Set `CONFIG` entries from ``"key=int,key=int"`` (the benchmarks' command-line overrides); an unknown key is a
    ValueError naming the known ones."""
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        if key not in CONFIG:
            raise ValueError(f"unknown key {key!r}; keys: {sorted(CONFIG)}")
        CONFIG[key] = int(value)


def launch_config(kernel: str, bd: int, dtype: torch.dtype = torch.bfloat16) -> dict[str, int]:
    """(block_m, block_h, warps, stages) of ``kernel`` ("fwd", "dx" or "dw") for a launch group of padded width bd
    and inputs of ``dtype``. TUNED was measured with 16-bit inputs and applies to them only: fp32 tiles take twice
    the shared memory (the dW kernel's 128 x 64 tiles need 256 KB, over an H200's 227 KB)."""
    cfg = {**CONFIG, **TUNED.get(bd, {})} if CONFIG["tuned"] and dtype.itemsize == 2 else CONFIG
    pre = KERNELS[kernel]
    if H_ALIGN % cfg[pre + "block_h"]:
        raise ValueError(f"band_mlp_kernel: {pre}block_h must divide H_ALIGN={H_ALIGN}, got {cfg[pre + 'block_h']}")
    return {k: cfg[pre + k] for k in SETTINGS}


def padded_hidden(h: int) -> int:
    """A band's hidden units in the packed weights: h rounded up to a multiple of H_ALIGN (zeros beyond h)."""
    return cdiv(h, H_ALIGN) * H_ALIGN


if triton is not None:
    if interpreted():   # the interpreter runs no PTX
        @triton.jit
        def _recip(x):
            return 1.0 / x
    else:
        @triton.jit
        def _recip(x):
            """1 / x to 1 ulp in one instruction (`rcp.approx.ftz`; IEEE division (`/`) compiles to a slow path
            behind a branch, libdevice's `fast_dividef` adds an instruction per value)."""
            return tl.inline_asm_elementwise("rcp.approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=tl.float32,
                                             is_pure=True, pack=1)

    @triton.jit
    def _tail_and_density(p):
        """(Phi(-|p|), phi(p)) of the standard normal, branch-free, by Abramowitz & Stegun 26.2.17:
        ``Phi(-z) ~ phi(z) t (b1 + t (b2 + ... + t b5))``, t = 1 / (1 + 0.2316419 z), z = |p|; phi (which the
        GELU's derivative needs too) is one exp2. Max abs error of Phi 7.5e-8 (of gelu 2.1e-7, of gelu' 7e-8,
        plus fp32 rounding; tested). (26.2.17 is 7.1.26's erfc form for the normal: the same approximation, with
        1/sqrt(2 pi) moved into the exponent, which saves an instruction per unit.) With libdevice's erf (which
        branches on |p|) and IEEE division the three kernels took 3.32 ms per layer, with 7.1.26 2.57 (H200; the
        identity in place of the GELU 2.00: benchmarks/band_mlp_activation_probe.py, RESULTS.md)."""
        t = _recip(1.0 + 0.2316419 * tl.abs(p))
        poly = t * (0.319381530 + t * (-0.356563782 + t * (1.781477937 + t * (-1.821255978 + t * 1.330274429))))
        phi = tl.exp2(p * p * -0.7213475204444817 - 1.3257480647361594)    # 2^(-p^2 log2(e) / 2) / sqrt(2 pi)
        return poly * phi, phi

    @triton.jit
    def _gelu(p):
        """p Phi(p) = max(p, 0) - |p| Phi(-|p|)."""
        return tl.maximum(p, 0.0) - tl.abs(p) * _tail_and_density(p)[0]

    @triton.jit
    def _gelu_and_grad(p):
        """(gelu(p), gelu'(p)) sharing one exp."""
        tail, phi = _tail_and_density(p)
        cdf = tl.where(p >= 0, 1.0 - tail, tail)
        return p * cdf, cdf + p * phi

    # The kernels' GELU in packed bf16 arithmetic (G16, with bf16 weights): one instruction per two
    # hidden units where the fp32 form takes one per unit (the backward kernels are bound by instruction issue;
    # the forward takes it too, so that its activations are the ones the dW kernel recomputes).
    # For fp32 pre-activations p and upstream gradients dact: t = 1 / (1 + 0.37 |p|) in fp32; then in bf16x2 the
    # tail Phi(-|p|) = 2^E t (c0 + t (c1 + t c2)), E = -p^2 log2(e) / 2 (the coefficients fitted in bf16, all
    # positive, so no cancellation; the form's relative error 1.7e-3, about one bf16 rounding);
    # act = max(p, 0) - |p| tail; and dpre = dact gelu'(p) with one rounding: with g0 = tail - |p| phi(p),
    # gelu'(p) = 1 - g0 for p >= 0 and g0 below, so dpre = fma(-dact, g0, dact) or fma(dact, g0, 0), chosen by
    # p's sign bit. Like the per-band loop under bf16 autocast (which rounds the pre-activations to bf16 before
    # its GELU), as accurate: tested against it (`_gelu16_emulated` is the same arithmetic in Triton ops, for the
    # interpreter).
    def _g16_asm(act: bool, dpre: bool) -> str:
        """PTX of `_gelu16_emulated` for one pair of units; operands: the outputs (act, dpre, those asked for),
        then p0, p1 (and dact0, dact1 for dpre)."""
        n_out = act + dpre
        p0, p1, d0, d1 = (f"${n_out + i}" for i in range(4))
        out_dpre = f"${int(act)}"
        head = f"""{{
        .reg .f32 gt0, gt1;
        .reg .b32 gp, gt, gq, ge, gx2, gna, gg, gd, gs, gx, gy, gc;
        abs.f32 gt0, {p0};
        abs.f32 gt1, {p1};
        fma.rn.f32 gt0, gt0, 0f3EBD70A4, 0f3F800000;    // 1 + 0.37 |p|
        fma.rn.f32 gt1, gt1, 0f3EBD70A4, 0f3F800000;
        rcp.approx.ftz.f32 gt0, gt0;
        rcp.approx.ftz.f32 gt1, gt1;
        cvt.rn.bf16x2.f32 gp, {p1}, {p0};
        cvt.rn.bf16x2.f32 gt, gt1, gt0;
        mov.b32 gc, 0x3E7B3E7B;                 // c2 = 0.2451171875
        mov.b32 gq, 0x3DD03DD0;                 // c1 = 0.1015625
        fma.rn.bf16x2 gq, gt, gc, gq;
        mov.b32 gc, 0x3E1D3E1D;                 // c0 = 0.1533203125
        fma.rn.bf16x2 gq, gt, gq, gc;
        mul.rn.bf16x2 gq, gt, gq;               // poly = tail / 2^E
        mul.rn.bf16x2 ge, gp, gp;
        mov.b32 gc, 0xBF39BF39;                 // -log2(e) / 2 = -0.72265625 in bf16
        mul.rn.bf16x2 ge, ge, gc;
        ex2.approx.ftz.bf16x2 gx2, ge;          // 2^E = sqrt(2 pi) phi(p)
        or.b32 gna, gp, 0x80008000;             // -|p|"""
        grad = f"""
        mov.b32 gc, 0x3ECC3ECC;                 // 1 / sqrt(2 pi) = 0.3984375 in bf16
        fma.rn.bf16x2 gg, gna, gc, gq;
        mul.rn.bf16x2 gg, gg, gx2;              // g0 = tail - |p| phi
        cvt.rn.bf16x2.f32 gd, {d1}, {d0};
        prmt.b32 gs, gp, 0, 0xBB99;             // 0xFFFF in each half whose p has its sign bit set
        lop3.b32 gx, gd, gs, 0x80008000, 0xD2;  // -dact where p >= 0, else dact
        lop3.b32 gy, gd, gs, 0, 0x30;           // dact where p >= 0, else 0
        fma.rn.bf16x2 {out_dpre}, gx, gg, gy;""" if dpre else ""
        gelu = """
        mul.rn.bf16x2 gq, gq, gx2;              // tail = 2^E poly
        mov.b32 gc, 0;
        max.bf16x2 gs, gp, gc;
        fma.rn.bf16x2 $0, gna, gq, gs;          // act = max(p, 0) - |p| tail""" if act else ""
        return head + grad + gelu + "\n        }"

    _ACT16_ASM = tl.constexpr(_g16_asm(True, False))
    _DPRE16_ASM = tl.constexpr(_g16_asm(False, True))
    _ACT_DPRE16_ASM = tl.constexpr(_g16_asm(True, True))

    @triton.jit
    def _b16(x):
        """fp32 x rounded to the nearest bf16 (ties to even), as fp32; by its bits, since the interpreter's casts
        to bf16 truncate."""
        bits = x.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return bits.to(tl.float32, bitcast=True)

    @triton.jit
    def _gelu16_emulated(p, dact):
        """(gelu(p), dact gelu'(p)) in bf16 by the packed-bf16 arithmetic above, each bf16 operation as an fp32
        one rounded to bf16 (the interpreter's stand-in for the PTX, and its specification)."""
        t = _b16(1.0 / (1.0 + 0.37 * tl.abs(p)))
        pb = _b16(p)
        poly = _b16(t * _b16(t * _b16(t * 0.2451171875 + 0.1015625) + 0.1533203125))
        x2 = _b16(tl.exp2(_b16(_b16(pb * pb) * -0.72265625)))
        na = -tl.abs(pb)
        g0 = _b16(_b16(na * 0.3984375 + poly) * x2)
        d = _b16(dact)
        dpre = _b16(tl.where(pb < 0, d, -d) * g0 + tl.where(pb < 0, 0.0, d))
        act = _b16(na * _b16(poly * x2) + tl.maximum(pb, 0.0))
        return act.to(tl.bfloat16), dpre.to(tl.bfloat16)

    if interpreted():   # no PTX
        @triton.jit
        def _act16(p):
            return _gelu16_emulated(p, p)[0]

        @triton.jit
        def _dpre16(p, dact):
            return _gelu16_emulated(p, dact)[1]

        @triton.jit
        def _act_dpre16(p, dact):
            return _gelu16_emulated(p, dact)

        @triton.jit
        def _add16(a, b):
            return _b16(a.to(tl.float32) + b.to(tl.float32)).to(tl.bfloat16)
    else:
        @triton.jit
        def _act16(p):
            """gelu(p) in bf16, from fp32 p, in packed bf16 arithmetic (above)."""
            return tl.inline_asm_elementwise(_ACT16_ASM, "=r,r,r", [p], dtype=tl.bfloat16, is_pure=True, pack=2)

        @triton.jit
        def _dpre16(p, dact):
            """dact gelu'(p) in bf16, from fp32 p and dact (same shape), in packed bf16 arithmetic (above)."""
            return tl.inline_asm_elementwise(_DPRE16_ASM, "=r,r,r,r,r", [p, dact], dtype=tl.bfloat16,
                                             is_pure=True, pack=2)

        @triton.jit
        def _act_dpre16(p, dact):
            """(gelu(p), dact gelu'(p)) in bf16, from fp32 p and dact, in packed bf16 arithmetic (above)."""
            return tl.inline_asm_elementwise(_ACT_DPRE16_ASM, "=r,=r,r,r,r,r", [p, dact],
                                             dtype=(tl.bfloat16, tl.bfloat16), is_pure=True, pack=2)

        @triton.jit
        def _add16(a, b):
            """a + b of two bf16 tensors, two per instruction."""
            return tl.inline_asm_elementwise("add.rn.bf16x2 $0, $1, $2;", "=r,r,r", [a, b], dtype=tl.bfloat16,
                                             is_pure=True, pack=2)

    @triton.jit
    def _row_pair_sums16(t, BM: tl.constexpr, BH: tl.constexpr):
        """(BM // 2, BH) fp32 sums of rows r and r + 8 (r mod 16 < 8) of a (BM, BH) bf16 tile, added in bf16 two
        per instruction: under the matmul accumulator layout one thread holds both rows, so this halves the
        conversions to fp32 and the fp32 additions of the dW kernel's bias gradient for one more bf16 rounding
        (of the same size as dpre's own)."""
        lo, hi = tl.split(tl.permute(tl.reshape(t, (BM // 16, 2, 8, BH)), (0, 2, 3, 1)))
        return tl.reshape(_add16(lo, hi).to(tl.float32), (BM // 2, BH))

    @triton.jit
    def _keep(seed_ptr, band, rows, h0, h, p_drop, BH: tl.constexpr):
        """(len(rows), BH) dropout keep-mask of hidden units h0 .. h0 + BH (h0 a multiple of 8), True with
        probability 1 - p_drop: a function of (seed, band, token row, hidden unit) only, so the backward kernels
        regenerate the forward's. One Philox call (10 rounds) gives four 32-bit draws, whose eight 16-bit halves
        are the uniform integers of units 8q .. 8q + 7 (q = unit // 8), each kept when >= round(p_drop 2^16): the
        keep probability is 1 - p_drop to within 2^-17. (An eighth of a Philox call per hidden unit, where 24-bit
        draws took a quarter: the random numbers were most of the kernels' instructions with dropout,
        benchmarks/band_mlp_sass_count.py --dropout.)"""
        octs = h0 // 8 + tl.arange(0, BH // 8)
        r0, r1, r2, r3 = tl.randint4x(tl.load(seed_ptr) + band, rows[:, None] * (h // 8) + octs[None, :])
        lo = tl.join(tl.join(r0 & 0xFFFF, r1 & 0xFFFF), tl.join(r2 & 0xFFFF, r3 & 0xFFFF))
        hi = tl.join(tl.join(r0 >> 16, r1 >> 16), tl.join(r2 >> 16, r3 >> 16))
        r = tl.reshape(tl.join(lo, hi), (rows.shape[0], BH))
        return r >= tl.cast(p_drop * 65536.0 + 0.5, tl.uint32)

    @triton.jit
    def _band(tab_ptr, slot, ALIGN: tl.constexpr):
        """Row ``slot`` of the band table (`band_table`): (band, col0, d, h, woff, hoff) — the band's index, first
        channel, width, hidden units (a multiple of H_ALIGN), offset of its weights in the packed W1/W2 and of its
        hidden units in b1 (multiples of H_ALIGN). ALIGN: every width is a multiple of 16. The compiler is told
        both (values read from memory carry no such guarantee, and without it loads are not vectorised)."""
        t = tab_ptr + slot * 6
        band, col0, d, h, woff, hoff = (tl.load(t), tl.load(t + 1), tl.load(t + 2), tl.load(t + 3),
                                        tl.load(t + 4), tl.load(t + 5))
        woff, hoff = tl.multiple_of(woff, 128), tl.multiple_of(hoff, 128)     # H_ALIGN
        if ALIGN:
            col0, d = tl.multiple_of(col0, 16), tl.multiple_of(d, 16)
        return band, col0, d, h, woff, hoff

    @triton.jit
    def _work_item(tab_ptr, row0, nb, item, BH: tl.constexpr):
        """(slot, hidden tile) of the dW kernel's work item ``item`` in a launch group of nb bands from table row
        row0: the group's bands' tiles of BH hidden units, numbered band after band."""
        slot, first = item * 0, item * 0
        for s in range(nb - 1):
            tiles = tl.load(tab_ptr + (row0 + s) * 6 + 3) // BH
            past = (slot == s) & (item >= first + tiles)
            first = tl.where(past, first + tiles, first)
            slot = tl.where(past, s + 1, slot)
        return slot, item - first

    @triton.jit
    def _token_block(N, D, col0, d, BM: tl.constexpr, BD: tl.constexpr):
        """This program's token rows and its (BM, BD) tile of band columns [col0, col0 + d) of an (N, D) tensor:
        rows, offsets, mask."""
        rows = tl.program_id(0) * BM + tl.arange(0, BM)
        cols = tl.arange(0, BD)
        return rows, rows[:, None] * D + col0 + cols[None, :], (rows < N)[:, None] & (cols < d)[None, :]

    @triton.jit
    def _weight_tiles(w1_ptr, w2t_ptr, hs, d, dt, BD: tl.constexpr):
        """W1[hs, :]^T and W2[:, hs], both (BD, len(hs)) in dtype dt, zero in the pad channels (>= d); both read
        from (h, d) row-major matrices (W1 and W2^T), contiguous along the band's channels. hs: whole hidden
        tiles (h is a multiple of H_ALIGN: no mask along the hidden units)."""
        cols = tl.arange(0, BD)
        ok = (cols < d)[:, None]
        off = hs[None, :] * d + cols[:, None]
        return tl.load(w1_ptr + off, mask=ok, other=0.0).to(dt), tl.load(w2t_ptr + off, mask=ok, other=0.0).to(dt)

    @triton.jit
    def _pre(x, w1t, b1_ptr, hs, HAS_BIAS: tl.constexpr, PREC: tl.constexpr):
        """Hidden pre-activations x W1^T + b1 of one hidden tile, fp32."""
        pre = tl.dot(x, w1t, out_dtype=tl.float32, input_precision=PREC)
        if HAS_BIAS:
            pre += tl.load(b1_ptr + hs).to(tl.float32)[None, :]
        return pre

    @triton.jit
    def _norm_stats(x, d, eps, BD: tl.constexpr):
        """Per-row (mean, 1 / std) of a (BM, BD) band tile over its first d columns (zeros beyond), fp32, as
        LayerNorm forms them (biased variance)."""
        c_ok = (tl.arange(0, BD) < d)[None, :]
        xf = x.to(tl.float32)
        mean = tl.sum(xf, 1) / d
        xc = tl.where(c_ok, xf - mean[:, None], 0.0)
        return mean, tl.math.rsqrt(tl.sum(xc * xc, 1) / d + eps)

    @triton.jit
    def _x_hat(x, mean, rstd, d, BD: tl.constexpr):
        """(x - mean) / std per row, fp32, zero in the pad columns."""
        c_ok = (tl.arange(0, BD) < d)[None, :]
        return tl.where(c_ok, (x.to(tl.float32) - mean[:, None]) * rstd[:, None], 0.0)

    @triton.jit
    def _band_row(ptr, col0, d, BD: tl.constexpr):
        """(1, BD) fp32 row of a (D,) per-channel vector (a LayerNorm weight or bias) over the band's channels
        col0 .. col0 + d, zero in the pad columns."""
        cols = tl.arange(0, BD)
        return tl.load(ptr + col0 + cols, mask=cols < d, other=0.0).to(tl.float32)[None, :]

    @triton.jit
    def _normed(x, lnw_ptr, lnb_ptr, col0, d, eps, dt, HAS_LN: tl.constexpr, HAS_LN_BIAS: tl.constexpr,
                BD: tl.constexpr):
        """The band MLP's input tile in dtype dt: LayerNorm(x) of the band (HAS_LN; weight and bias of channels
        col0 .. col0 + d; zero in the pad columns) or x itself."""
        if HAS_LN:
            mean, rstd = _norm_stats(x, d, eps, BD)
            y = _x_hat(x, mean, rstd, d, BD) * _band_row(lnw_ptr, col0, d, BD)
            if HAS_LN_BIAS:
                y += _band_row(lnb_ptr, col0, d, BD)
            return y.to(dt)
        return x.to(dt)

    @triton.jit
    def _fwd_kernel(x_ptr, lnw_ptr, lnb_ptr, xn_ptr, w1_ptr, b1_ptr, w2t_ptr, y_ptr, seed_ptr, tab_ptr, row0, p_drop,
                    eps, N, D, HAS_LN: tl.constexpr, HAS_LN_BIAS: tl.constexpr, HAS_BIAS: tl.constexpr,
                    DROP: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr, BH: tl.constexpr, PREC: tl.constexpr,
                    ALIGN: tl.constexpr, G16: tl.constexpr):
        band, col0, d, h, woff, hoff = _band(tab_ptr, row0 + tl.program_id(1), ALIGN)
        rows, io, io_ok = _token_block(N, D, col0, d, BM, BD)
        dt = w1_ptr.dtype.element_ty
        x = _normed(tl.load(x_ptr + io, mask=io_ok, other=0.0), lnw_ptr, lnb_ptr, col0, d, eps, dt, HAS_LN,
                    HAS_LN_BIAS, BD)
        if HAS_LN:   # the normalised input, saved for the backward kernels
            tl.store(xn_ptr + io, x, mask=io_ok)
        acc = tl.zeros((BM, BD), dtype=tl.float32)
        for h0 in range(0, h, BH):
            hs = h0 + tl.arange(0, BH)
            w1t, w2 = _weight_tiles(w1_ptr + woff, w2t_ptr + woff, hs, d, dt, BD)
            pre = _pre(x, w1t, b1_ptr + hoff, hs, HAS_BIAS, PREC)
            if G16:
                act = _act16(pre)
            else:
                act = _gelu(pre).to(dt)
            if DROP:   # (the 1 / (1 - p) of the kept units is applied once, to the sum)
                act = tl.where(_keep(seed_ptr, band, rows, h0, h, p_drop, BH), act, 0.0)
            acc += tl.dot(act, tl.trans(w2), out_dtype=tl.float32, input_precision=PREC)
        if DROP:
            acc *= 1.0 / (1.0 - p_drop)
        tl.store(y_ptr + io, acc.to(y_ptr.dtype.element_ty), mask=io_ok)

    @triton.jit
    def _dx_kernel(x_ptr, lnw_ptr, lnb_ptr, xin_ptr, dy_ptr, w1_ptr, b1_ptr, w2t_ptr, dx_ptr, dlnw_ptr, dlnb_ptr,
                   seed_ptr, tab_ptr, row0, p_drop, eps, N, D, HAS_LN: tl.constexpr, HAS_LN_BIAS: tl.constexpr,
                   HAS_BIAS: tl.constexpr, DROP: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr,
                   BH: tl.constexpr, PREC: tl.constexpr, ALIGN: tl.constexpr, G16: tl.constexpr):
        band, col0, d, h, woff, hoff = _band(tab_ptr, row0 + tl.program_id(1), ALIGN)
        rows, io, io_ok = _token_block(N, D, col0, d, BM, BD)
        dt = w1_ptr.dtype.element_ty
        x = tl.load(xin_ptr + io, mask=io_ok, other=0.0).to(dt)     # the MLPs' input (normalised by the forward)
        dy = tl.load(dy_ptr + io, mask=io_ok, other=0.0).to(dt)
        dx = tl.zeros((BM, BD), dtype=tl.float32)       # d loss / d (the MLP's input)
        for h0 in range(0, h, BH):
            hs = h0 + tl.arange(0, BH)
            w1t, w2 = _weight_tiles(w1_ptr + woff, w2t_ptr + woff, hs, d, dt, BD)
            pre = _pre(x, w1t, b1_ptr + hoff, hs, HAS_BIAS, PREC)
            dact = tl.dot(dy, w2, out_dtype=tl.float32, input_precision=PREC)
            if DROP:   # (the 1 / (1 - p) of the kept units is applied once, to the sum)
                dact = tl.where(_keep(seed_ptr, band, rows, h0, h, p_drop, BH), dact, 0.0)
            if G16:
                dpre = _dpre16(pre, dact)
            else:
                dpre = (dact * _gelu_and_grad(pre)[1]).to(dt)    # (the activation is compiled away)
            dx += tl.dot(dpre, tl.trans(w1t), out_dtype=tl.float32, input_precision=PREC)
        if DROP:
            dx *= 1.0 / (1.0 - p_drop)
        if HAS_LN:   # through the band's LayerNorm: its input's gradient, and this block's share of dw, db
            cols = tl.arange(0, BD)
            xr = tl.load(x_ptr + io, mask=io_ok, other=0.0)
            mean, rstd = _norm_stats(xr, d, eps, BD)
            xhat = _x_hat(xr, mean, rstd, d, BD)
            g = dx * _band_row(lnw_ptr, col0, d, BD)
            mg, mgx = tl.sum(g, 1) / d, tl.sum(g * xhat, 1) / d
            part = tl.program_id(0) * D + col0 + cols
            tl.store(dlnw_ptr + part, tl.sum(dx * xhat, 0), mask=cols < d)
            if HAS_LN_BIAS:
                tl.store(dlnb_ptr + part, tl.sum(dx, 0), mask=cols < d)
            dx = (g - mg[:, None] - xhat * mgx[:, None]) * rstd[:, None]
        tl.store(dx_ptr + io, dx.to(dx_ptr.dtype.element_ty), mask=io_ok)

    @triton.jit
    def _dw_kernel(x_ptr, dy_ptr, w1_ptr, b1_ptr, w2t_ptr, dw1_ptr, db1_ptr, dw2t_ptr, seed_ptr, tab_ptr, row0, nb,
                   p_drop, N, D, TW, TH, rows_per_split, HAS_BIAS: tl.constexpr, DROP: tl.constexpr,
                   BM: tl.constexpr, BD: tl.constexpr, BH: tl.constexpr, PREC: tl.constexpr, ALIGN: tl.constexpr,
                   EVEN_M: tl.constexpr, G16: tl.constexpr):
        """x: the MLPs' input (normalised by the forward kernel when it applies the LayerNorm). EVEN_M: the splits
        cover exactly N tokens (no token mask in the loop)."""
        slot, tile = _work_item(tab_ptr, row0, nb, tl.program_id(0), BH)
        split = tl.program_id(1)
        band, col0, d, h, woff, hoff = _band(tab_ptr, row0 + slot, ALIGN)
        hs = tile * BH + tl.arange(0, BH)
        cols = tl.arange(0, BD)
        c_ok = cols < d
        w_ok = c_ok[:, None]
        dt = w1_ptr.dtype.element_ty
        w1t, w2 = _weight_tiles(w1_ptr + woff, w2t_ptr + woff, hs, d, dt, BD)
        dw1t = tl.zeros((BD, BH), dtype=tl.float32)
        dw2 = tl.zeros((BD, BH), dtype=tl.float32)
        if G16:   # summed over its rows after the loop
            db1 = tl.zeros((BM // 2, BH), dtype=tl.float32)
        else:
            db1 = tl.zeros((BM, BH), dtype=tl.float32)
        start = split * rows_per_split
        for m0 in range(start, start + rows_per_split, BM):
            rows = m0 + tl.arange(0, BM)
            io = rows[:, None] * D + col0 + cols[None, :]
            if EVEN_M:
                io_ok = c_ok[None, :]
            else:
                io_ok = (rows < N)[:, None] & c_ok[None, :]
            x = tl.load(x_ptr + io, mask=io_ok, other=0.0).to(dt)
            dy = tl.load(dy_ptr + io, mask=io_ok, other=0.0).to(dt)
            pre = _pre(x, w1t, b1_ptr + hoff, hs, HAS_BIAS, PREC)
            dact = tl.dot(dy, w2, out_dtype=tl.float32, input_precision=PREC)
            if DROP:   # (the 1 / (1 - p) of the kept units is applied once, to the sums)
                keep = _keep(seed_ptr, band, rows, tile * BH, h, p_drop, BH)
                dact = tl.where(keep, dact, 0.0)
            if G16:
                act, dpre = _act_dpre16(pre, dact)
                if HAS_BIAS:
                    db1 += _row_pair_sums16(dpre, BM, BH)
            else:
                act, grad = _gelu_and_grad(pre)
                dpre = dact * grad
                if HAS_BIAS:
                    db1 += dpre
                act, dpre = act.to(dt), dpre.to(dt)
            if DROP:
                act = tl.where(keep, act, 0.0)
            dw1t += tl.dot(tl.trans(x), dpre, out_dtype=tl.float32, input_precision=PREC)
            dw2 += tl.dot(tl.trans(dy), act, out_dtype=tl.float32, input_precision=PREC)
        if DROP:
            scale = 1.0 / (1.0 - p_drop)
            dw1t, dw2, db1 = dw1t * scale, dw2 * scale, db1 * scale
        part = split * TW + woff
        tl.store(dw1_ptr + part + hs[None, :] * d + cols[:, None], dw1t, mask=w_ok)
        tl.store(dw2t_ptr + part + hs[None, :] * d + cols[:, None], dw2, mask=w_ok)    # as W2^T, (h, d)
        if HAS_BIAS:
            tl.store(db1_ptr + split * TH + hoff + hs, tl.sum(db1, 0))


_GROUPS: dict = {}
_TABLES: dict = {}
_launch = {"fwd": CachedLaunch(_fwd_kernel), "dx": CachedLaunch(_dx_kernel),
           "dw": CachedLaunch(_dw_kernel)} if triton is not None else {}


def _launch_groups(pairs: tuple[tuple[int, int], ...], grouped: bool = True) -> list[dict]:
    """Bands with the same padded width ``BD = pow2(d)`` share one launch of each kernel (3 launches instead of 7
    for the seed widths; the programs of all the group's bands fill the GPU's waves together). Per group: BD, its
    first row in `band_table` (row0), n bands, their hidden sizes h, a cache of the dW kernel's work items per
    hidden tile and align (every band's width a multiple of 16: the kernels' ALIGN). ``pairs``: (d, h) per band. ``grouped=False``: one launch per band (`CONFIG["grouped"]`, for
    comparison). Host-side only (no device tensors: nothing is allocated while a CUDA graph is captured)."""
    key = (pairs, grouped)
    if key not in _GROUPS:
        order = _table_order(pairs)
        align = all(d % 16 == 0 for d, _ in pairs)
        groups: dict = {}
        for row, band in enumerate(order):
            d, h = pairs[band]
            g = groups.setdefault(pow2(d) if grouped else band, {"BD": pow2(d), "row0": row, "n": 0, "h": [],
                                                                 "items": {}, "align": align})
            g["n"] += 1
            g["h"].append(h)
        _GROUPS[key] = list(groups.values())
    return _GROUPS[key]


def _table_order(pairs: tuple[tuple[int, int], ...]) -> list[int]:
    """Band indices in `band_table`'s row order: grouped by padded width (groups in order of first appearance),
    so that every launch group's rows are contiguous, grouped or not."""
    first = {}
    for d, _ in pairs:
        first.setdefault(pow2(d), len(first))
    return sorted(range(len(pairs)), key=lambda b: (first[pow2(pairs[b][0])], b))


def band_table(pairs: tuple[tuple[int, int], ...] | list) -> torch.Tensor:
    """int32 (bands, 6) CPU table the kernels read their band from, rows (band, col0, d, h, woff, hoff) (see
    `_band`) in `_table_order`, for the packed weights' layout: h = `padded_hidden` of the pairs' hidden sizes.
    `BandMLP` keeps it as a buffer (so it moves with the module and, under CUDA graphs, is a static input, not an
    allocation of the captured graph)."""
    pairs = tuple((d, padded_hidden(h)) for d, h in pairs)
    rows, col0, woff, hoff = [], 0, 0, 0
    for band, (d, h) in enumerate(pairs):
        rows.append((band, col0, d, h, woff, hoff))
        col0, woff, hoff = col0 + d, woff + d * h, hoff + h
    return torch.tensor([rows[b] for b in _table_order(pairs)], dtype=torch.int32)


def _device_table(pairs: tuple[tuple[int, int], ...], device: torch.device) -> torch.Tensor:
    """`band_table` on ``device``, cached: for calls of `band_mlp` without a table (tests, benchmarks)."""
    key = (pairs, str(device))
    if key not in _TABLES:
        _TABLES[key] = band_table(pairs).to(device)
    return _TABLES[key]


def _work_items(g: dict, bh: int) -> int:
    """Number of the dW kernel's work items (hidden tiles of bh units over the group's bands)."""
    if bh not in g["items"]:
        g["items"][bh] = sum(cdiv(h, bh) for h in g["h"])
    return g["items"][bh]


class Operands(NamedTuple):
    """What every launch reads. x (N, D): the residual stream when ``lnw`` is given (each band's LayerNorm, weight
    lnw and bias lnb (D,) or None, is then applied on chip), else the band MLPs' input; w1f, b1f, w2tf: the packed
    weights (see `band_mlp_packed`; their dtype is the matmuls'); seed: the dropout seed tensor (any tensor when
    p_drop is 0: never read); pairs: (d, h) per band; table: `band_table(pairs)` on x's device; gelu16: the
    kernels take the packed-bf16 GELU (`_act16`, `_act_dpre16`) when the weights are bf16."""
    x: torch.Tensor
    w1f: torch.Tensor
    b1f: torch.Tensor | None
    w2tf: torch.Tensor
    lnw: torch.Tensor | None
    lnb: torch.Tensor | None
    eps: float
    seed: torch.Tensor
    p_drop: float
    pairs: tuple[tuple[int, int], ...]
    table: torch.Tensor
    gelu16: bool = True


def _operands(x, w1f, b1f, w2tf, lnw, lnb, eps, seed, p_drop, dims, table, gelu16) -> Operands:
    if not 0.0 <= p_drop < 1.0:
        raise ValueError(f"akira::band_mlp: p_drop must be in [0, 1), got {p_drop}")
    if p_drop > 0 and seed is None:
        raise ValueError("akira::band_mlp: dropout (p_drop > 0) needs a seed tensor")
    if any(h % H_ALIGN for h in dims[1::2]):
        raise ValueError(f"akira::band_mlp: hidden sizes must be multiples of H_ALIGN={H_ALIGN} (band_mlp pads "
                         f"them), got {dims[1::2]}")
    if tuple(table.shape) != (len(dims) // 2, 6) or table.dtype != torch.int32:
        raise ValueError(f"akira::band_mlp: table must be band_table of the {len(dims) // 2} bands (int32 "
                         f"({len(dims) // 2}, 6)), got {table.dtype} {tuple(table.shape)}")
    return Operands(x.contiguous(), w1f, b1f, w2tf, lnw, lnb, eps, seed if seed is not None else x, p_drop,
                    _pairs(dims), table, gelu16)


def _meta(ops: Operands, g: dict, cfg: dict[str, int], kernel: str) -> dict:
    """The compile-time arguments of ``kernel`` ("fwd", "dx" or "dw"; the dW kernel has no LayerNorm ones) for
    launch group g."""
    meta = {"HAS_BIAS": ops.b1f is not None, "DROP": ops.p_drop > 0, "BD": g["BD"], "BH": cfg["block_h"],
            "BM": cfg["block_m"], "ALIGN": g["align"], "PREC": dot_precision(ops.w1f),
            "num_warps": cfg["warps"], "num_stages": cfg["stages"]}
    meta["G16"] = ops.gelu16 and ops.w1f.dtype == torch.bfloat16
    return {"HAS_LN": ops.lnw is not None, "HAS_LN_BIAS": ops.lnb is not None, **meta} if kernel != "dw" else meta


def _pairs(dims: list[int]) -> tuple[tuple[int, int], ...]:
    """[d0, h0, d1, h1, ...] -> ((d0, h0), (d1, h1), ...)."""
    return tuple(zip(dims[0::2], dims[1::2]))


def _or(t: torch.Tensor | None, placeholder: torch.Tensor) -> torch.Tensor:
    """A kernel pointer argument: t, or (absent, never read) any tensor."""
    return t if t is not None else placeholder


def launch_fwd(g: dict, ops: Operands, y: torch.Tensor, xn: torch.Tensor, cfg: dict[str, int]) -> None:
    """The forward kernel for launch group g: writes g's band columns of y (N, D) and, with the LayerNorm, of the
    normalised input xn (N, D) (in the weights' dtype; saved for the backward)."""
    n, dim = ops.x.shape
    w = ops.w1f
    _launch["fwd"]((cdiv(n, cfg["block_m"]), g["n"]),
        ops.x, _or(ops.lnw, w), _or(ops.lnb, w), xn, w, _or(ops.b1f, w), ops.w2tf, y, ops.seed, ops.table, g["row0"],
        ops.p_drop, ops.eps, n, dim, **_meta(ops, g, cfg, "fwd"))


def launch_dx(g: dict, ops: Operands, xin: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, p_lnw: torch.Tensor,
              p_lnb: torch.Tensor, cfg: dict[str, int]) -> None:
    """The dx kernel for launch group g (xin: the MLPs' input, xn or x): writes g's band columns of dx (N, D) and,
    with the LayerNorm, of its weight's and bias's per-token-block partial gradients p_lnw, p_lnb (row = token
    block of cfg's block_m)."""
    n, dim = ops.x.shape
    w = ops.w1f
    _launch["dx"]((cdiv(n, cfg["block_m"]), g["n"]),
        ops.x, _or(ops.lnw, w), _or(ops.lnb, w), xin, dy, w, _or(ops.b1f, w), ops.w2tf, dx, p_lnw, p_lnb,
        ops.seed, ops.table, g["row0"], ops.p_drop, ops.eps, n, dim, **_meta(ops, g, cfg, "dx"))


def launch_dw(g: dict, ops: Operands, xin: torch.Tensor, dy: torch.Tensor, p_w1: torch.Tensor, p_b1: torch.Tensor,
              p_w2t: torch.Tensor, cfg: dict[str, int]) -> None:
    """The dW kernel for launch group g (xin: the MLPs' input): writes g's bands' entries of the per-split partial
    sums p_w1, p_w2t (splits, sum d*h) and p_b1 (splits, sum h)."""
    n, dim = ops.x.shape
    splits, bm = p_w1.shape[0], cfg["block_m"]
    rows_per_split = cdiv(cdiv(n, splits), bm) * bm
    _launch["dw"]((_work_items(g, cfg["block_h"]), splits),
        xin, dy, ops.w1f, _or(ops.b1f, ops.w1f), ops.w2tf, p_w1, p_b1, p_w2t, ops.seed, ops.table, g["row0"], g["n"],
        ops.p_drop, n, dim, p_w1.shape[1], p_b1.shape[1], rows_per_split, EVEN_M=splits * rows_per_split == n,
        **_meta(ops, g, cfg, "dw"))


def band_mlp(x: torch.Tensor, w1: list[torch.Tensor], b1: list[torch.Tensor], w2: list[torch.Tensor],
             b2: list[torch.Tensor], seed: torch.Tensor | None, p_drop: float,
             norm: tuple[list[torch.Tensor], list[torch.Tensor], float] | None = None,
             table: torch.Tensor | None = None, gelu16: bool = True) -> torch.Tensor:
    """x (N, D) -> y (N, D) in the weights' dtype; band i = columns [sum d_<i, + d_i) with d_i = w1[i].shape[1]
    (W1_i (h_i, d_i), W2_i (d_i, h_i)); b1, b2 empty lists for no biases; hidden dropout with probability p_drop,
    mask drawn from seed (int64, (1,); None when p_drop is 0). ``norm = (weights, biases, eps)``: each band's
    LayerNorm (weight and bias (d_i,); biases an empty list for none) is applied to x inside the kernels, so x
    is then the residual stream (any float dtype; the statistics in fp32; the forward kernel writes the
    normalised input once, for the backward); otherwise x is the MLPs' input. ``table``: `band_table` of these
    bands on x's device (`BandMLP`'s buffer; None: a cached one). ``gelu16``: with bf16 weights the kernels
    evaluate the GELU (and its derivative) in packed bf16 arithmetic (`_act16`, `_act_dpre16`; faster, as accurate
    as the per-band loop under bf16 autocast: tested) instead of fp32.

    Packs the weights (W1s, W2^Ts, b1s each into one flat tensor, each band's hidden units padded with zeros to
    `padded_hidden`, which changes no output or gradient) in torch and adds b2 after the op, so that under
    torch.compile the packing, its backward (the split of the packed gradients into the bands' parameters) and
    the bias run inside the compiled graph as a few fused kernels, not as dozens of eager copies around the op
    on every call (which left the GPU idle: measured, benchmarks/RESULTS.md)."""
    pad = [padded_hidden(w.shape[0]) - w.shape[0] for w in w1]
    dims = [n for w, p in zip(w1, pad) for n in (w.shape[1], w.shape[0] + p)]
    w1f = torch.cat([F.pad(w, (0, 0, 0, p)).reshape(-1) for w, p in zip(w1, pad)])
    w2tf = torch.cat([F.pad(w.t(), (0, 0, 0, p)).reshape(-1) for w, p in zip(w2, pad)])
    b1f = torch.cat([F.pad(b, (0, p)) for b, p in zip(b1, pad)]) if b1 else None
    lnw, lnb, eps = (torch.cat(list(norm[0])), torch.cat(list(norm[1])) if norm[1] else None, float(norm[2])) \
        if norm is not None else (None, None, 0.0)
    if table is None:
        table = _device_table(_pairs(dims), x.device)
    y, _ = torch.ops.akira.band_mlp_packed(x, w1f, b1f, w2tf, lnw, lnb, eps, seed, p_drop, dims, table, gelu16)
    return y + torch.cat(list(b2)).to(y.dtype) if b2 else y


@torch.library.custom_op("akira::band_mlp_packed", mutates_args=())
def band_mlp_packed(x: torch.Tensor, w1f: torch.Tensor, b1f: torch.Tensor | None, w2tf: torch.Tensor,
                    lnw: torch.Tensor | None, lnb: torch.Tensor | None, eps: float, seed: torch.Tensor | None,
                    p_drop: float, dims: list[int], table: torch.Tensor, gelu16: bool
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """x (N, D) -> (y, xn): y = sum_i W2_i drop(gelu(W1_i LN_i(x_i) + b1_i)) per band, (N, D) in w1f's dtype (no
    b2: `band_mlp` adds it; LN_i: band i's LayerNorm with weight lnw and bias lnb (D,) when lnw is given, else the
    identity); xn: LN(x) in w1f's dtype, saved for the backward (empty without the LayerNorm).
    w1f: the W1_i (h_i, d_i) flattened one after another; w2tf: the W2_i^T (h_i, d_i) likewise; b1f: the b1_i
    concatenated, or None; dims: [d_0, h_0, d_1, h_1, ...], every h_i a multiple of H_ALIGN (`band_mlp` pads
    the weights with zeros); table: `band_table` of dims' bands on x's device; gelu16: the GELU's arithmetic
    (`band_mlp`)."""
    ops = _operands(x, w1f, b1f, w2tf, lnw, lnb, eps, seed, p_drop, dims, table, gelu16)
    y = torch.empty(x.shape, dtype=w1f.dtype, device=x.device)
    xn = torch.empty_like(y) if lnw is not None else y.new_empty(0)
    for g in _launch_groups(ops.pairs, bool(CONFIG["grouped"])):
        launch_fwd(g, ops, y, xn, launch_config("fwd", g["BD"], w1f.dtype))
    return y, xn


@band_mlp_packed.register_fake
def _(x, w1f, b1f, w2tf, lnw, lnb, eps, seed, p_drop, dims, table, gelu16):
    y = x.new_empty(x.shape, dtype=w1f.dtype)
    return y, (torch.empty_like(y) if lnw is not None else y.new_empty(0))


def _partial_rows(n: int, dims: list[int], dtype: torch.dtype) -> list[int]:
    """[splits, blocks]: rows of the backward's partial sums for n tokens: the dW kernel's token splits (>= 64
    tokens, the least dW block, each) and the LayerNorm's per-dx-token-block rows (for the smallest block of any
    band; bands with larger blocks leave the rest zero). Computed where the backward op is called and passed to
    it, so that the op's output shapes are arguments of the (compiled, cached) graph, not read from `CONFIG`."""
    splits = max(1, min(CONFIG["dw_splits"], cdiv(n, 64)))
    return [splits, cdiv(n, min(launch_config("dx", bd, dtype)["block_m"] for bd in {pow2(d) for d in dims[0::2]}))]


@torch.library.custom_op("akira::band_mlp_packed_backward", mutates_args=())
def band_mlp_packed_backward(dy: torch.Tensor, x: torch.Tensor, xn: torch.Tensor, w1f: torch.Tensor,
                             b1f: torch.Tensor | None, w2tf: torch.Tensor, lnw: torch.Tensor | None,
                             lnb: torch.Tensor | None, eps: float, seed: torch.Tensor | None, p_drop: float,
                             dims: list[int], table: torch.Tensor, rows: list[int], gelu16: bool
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                        torch.Tensor]:
    """(dx, dw1f, db1f, dw2tf, dlnw, dlnb): dx in x's layout and dtype, the others as fp32 partial sums
    (parts, numel) whose sum over dim 0 is the gradient of w1f, b1f, w2tf, lnw, lnb (empty when that is None).
    The autograd backward (`_backward`) sums and casts them in torch, so that under torch.compile that runs in
    the compiled graph, fused with the split of the packed gradients. xn: the forward's normalised input (with
    lnw). rows: `_partial_rows`. gelu16: see `band_mlp`."""
    ops = _operands(x, w1f, b1f, w2tf, lnw, lnb, eps, seed, p_drop, dims, table, gelu16)
    xin = xn.contiguous() if lnw is not None else ops.x
    dy = dy.contiguous().to(w1f.dtype)
    n = x.shape[0]
    splits, blocks = rows
    if lnw is not None and _partial_rows(n, dims, w1f.dtype)[1] > blocks:
        raise RuntimeError("akira::band_mlp_packed_backward: band_mlp_kernel's dx block sizes changed after this "
                           "graph was traced; re-trace it (torch._dynamo.reset())")
    dx = torch.empty_like(ops.x)
    f32 = {"dtype": torch.float32, "device": x.device}
    p_w1, p_w2t = torch.empty(splits, w1f.numel(), **f32), torch.empty(splits, w1f.numel(), **f32)  # partial sums
    p_b1 = torch.empty(splits, b1f.numel() if b1f is not None else 0, **f32)
    p_lnw = torch.zeros(blocks, x.shape[1] if lnw is not None else 0, **f32)
    p_lnb = torch.zeros(blocks, x.shape[1] if lnb is not None else 0, **f32)
    for g in _launch_groups(ops.pairs, bool(CONFIG["grouped"])):
        launch_dx(g, ops, xin, dy, dx, p_lnw, p_lnb, launch_config("dx", g["BD"], w1f.dtype))
        launch_dw(g, ops, xin, dy, p_w1, p_b1, p_w2t, launch_config("dw", g["BD"], w1f.dtype))
    return dx, p_w1, p_b1, p_w2t, p_lnw, p_lnb


@band_mlp_packed_backward.register_fake
def _(dy, x, xn, w1f, b1f, w2tf, lnw, lnb, eps, seed, p_drop, dims, table, rows, gelu16):
    splits, blocks = rows

    def part(rows, t):   # the partial sums of t's gradient (fp32, (rows, t.numel())); (rows, 0) for no t
        return x.new_empty(rows, t.numel() if t is not None else 0, dtype=torch.float32)
    return (torch.empty_like(x), part(splits, w1f), part(splits, b1f), part(splits, w2tf), part(blocks, lnw),
            part(blocks, lnb))


def _setup_context(ctx, inputs, output):
    x, w1f, b1f, w2tf, lnw, lnb, eps, seed, p_drop, dims, table, gelu16 = inputs
    ctx.eps, ctx.p_drop, ctx.dims, ctx.gelu16 = eps, p_drop, dims, gelu16
    ctx.save_for_backward(x, output[1], w1f, b1f, w2tf, lnw, lnb, seed, table)
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, dy, _dxn):
    x, xn, w1f, b1f, w2tf, lnw, lnb, seed, table = ctx.saved_tensors
    rows = _partial_rows(x.shape[0], ctx.dims, w1f.dtype)
    dx, *parts = band_mlp_packed_backward(dy, x, xn, w1f, b1f, w2tf, lnw, lnb, ctx.eps, seed, ctx.p_drop, ctx.dims,
                                          table, rows, ctx.gelu16)
    grads = [part.sum(0).to(t.dtype) if t is not None else None
             for part, t in zip(parts, (w1f, b1f, w2tf, lnw, lnb))]
    return (dx, *grads, None, None, None, None, None, None)


band_mlp_packed.register_autograd(_backward, setup_context=_setup_context)
