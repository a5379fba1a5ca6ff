"""How much of the fused band MLP's kernel time is its activation's arithmetic?

Times the three kernels (forward, dx, dW) of every launch group alone on N tokens at the params-matched expansion
(bf16, the settings `band_mlp_kernel.launch_config` gives), with the GELU the kernels use (`current`) or, for
comparison only, another activation swapped into the kernels: libdevice's erf GELU (the kernels' form before
2026-12-03), the tanh-approximation GELU on the `tanh.approx` instruction, ReLU and the identity (the floor: matmuls
and memory only). The swapped activations change the function; they are measurements, not options. One process
per variant (Triton compiles a kernel once per process). Needs a CUDA GPU with Triton.

    python benchmarks/band_mlp_activation_probe.py [--variants current,libdevice,tanh,relu,identity]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from akira.models.lm import band_mlp_kernel as bk  # noqa: E402
from akira.models.lm import lm_preset  # noqa: E402
from akira.models.lm.params import band_hidden_sizes  # noqa: E402

tl, triton = bk.tl, bk.triton
WIDTHS = (128, 96, 80, 64, 64, 48, 32)

if triton is not None:
    @triton.jit
    def _libdevice(p):
        return 0.5 * p * (1.0 + tl.math.erf(p * 0.7071067811865476))

    @triton.jit
    def _libdevice_grad(p):
        cdf = 0.5 * (1.0 + tl.math.erf(p * 0.7071067811865476))
        return p * cdf, cdf + p * 0.3989422804014327 * tl.exp(-0.5 * p * p)

    @triton.jit
    def _tanh(x):
        return tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True,
                                         pack=1)

    @triton.jit
    def _gelu_tanh(p):
        return 0.5 * p * (1.0 + _tanh(0.7978845608028654 * (p + 0.044715 * p * p * p)))

    @triton.jit
    def _gelu_tanh_grad(p):
        t = _tanh(0.7978845608028654 * (p + 0.044715 * p * p * p))
        h = 0.5 * (1.0 + t)
        return p * h, h + 0.5 * p * (1.0 - t * t) * (0.7978845608028654 + 0.10703222440148 * p * p)

    @triton.jit
    def _relu(p):
        return tl.maximum(p, 0.0)

    @triton.jit
    def _relu_grad(p):
        return tl.maximum(p, 0.0), (p > 0).to(tl.float32)

    @triton.jit
    def _identity(p):
        return p

    @triton.jit
    def _identity_grad(p):
        return p, p * 0.0 + 1.0

VARIANTS = {"current": None, "libdevice": ("_libdevice", "_libdevice_grad"), "tanh": ("_gelu_tanh", "_gelu_tanh_grad"),
            "relu": ("_relu", "_relu_grad"), "identity": ("_identity", "_identity_grad")}


def time_ms(fn, reps: int = 30) -> float:
    """Mean ms of fn() over reps calls after 3 warm-up calls (CUDA events around the batch)."""
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def measure(variant: str, n: int) -> dict[str, float]:
    """ms per kernel per launch group ("<BD>/<kernel>"), per kernel summed over groups, and the total."""
    if VARIANTS[variant]:
        fwd, grad = VARIANTS[variant]
        bk._gelu, bk._gelu_and_grad = globals()[fwd], globals()[grad]   # before the first compile
    d, dev = sum(WIDTHS), torch.device("cuda")
    hidden = band_hidden_sizes(lm_preset("band", band_widths=WIDTHS, d_model=d, params_matched=True))
    pairs = tuple(zip(WIDTHS, hidden))
    tw, th = sum(a * b for a, b in pairs), sum(hidden)
    bf = {"dtype": torch.bfloat16, "device": dev}
    x, dy = torch.randn(n, d, **bf), torch.randn(n, d, **bf)
    w1f, w2tf, b1f = torch.randn(tw, **bf) * 0.05, torch.randn(tw, **bf) * 0.05, torch.zeros(th, **bf)
    y, dx = torch.empty_like(x), torch.empty_like(x)
    splits = bk.CONFIG["dw_splits"]
    f32 = {"dtype": torch.float32, "device": dev}
    p_w1, p_w2t, p_b1 = torch.empty(splits, tw, **f32), torch.empty(splits, tw, **f32), torch.empty(splits, th, **f32)
    out: dict[str, float] = {}
    for g in bk._launch_groups(pairs, dev):
        bd = g["BD"]
        out[f"{bd}/fwd"] = time_ms(lambda g=g: bk.launch_fwd(g, x, w1f, b1f, w2tf, y, x, 0.0, pairs,
                                                             bk.launch_config("fwd", g["BD"])))
        out[f"{bd}/dx"] = time_ms(lambda g=g: bk.launch_dx(g, x, dy, w1f, b1f, w2tf, dx, x, 0.0, pairs,
                                                           bk.launch_config("dx", g["BD"])))
        out[f"{bd}/dw"] = time_ms(lambda g=g: bk.launch_dw(g, x, dy, w1f, b1f, w2tf, p_w1, p_b1, p_w2t, x, 0.0,
                                                           pairs, bk.launch_config("dw", g["BD"])))
    for k in ("fwd", "dx", "dw"):
        out[k] = sum(v for key, v in out.items() if key.endswith("/" + k))
    out["total"] = out["fwd"] + out["dx"] + out["dw"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--tokens", type=int, default=64 * 512)
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)   # the child process: one variant, JSON out
    args = p.parse_args(argv)
    if not (torch.cuda.is_available() and bk.available()):
        p.error("needs a CUDA GPU and Triton")
    if args.one:
        print(json.dumps(measure(args.one, args.tokens)))
        return 0
    print(f"# fused band MLP kernels per activation, {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"Triton {triton.__version__}, {args.tokens} tokens, ms per layer\n| variant | fwd | dx | dW | total |\n"
          "|---|---|---|---|---|", flush=True)
    for v in args.variants.split(","):
        if v not in VARIANTS:
            p.error(f"unknown variant {v!r} (allowed: {', '.join(VARIANTS)})")
        r = subprocess.run([sys.executable, __file__, "--one", v, "--tokens", str(args.tokens)], capture_output=True,
                           text=True)
        if r.returncode:
            print(f"| {v} | failed: {r.stderr.strip().splitlines()[-1:]} |", flush=True)
            continue
        t = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"| {v} | {t['fwd']:.3f} | {t['dx']:.3f} | {t['dw']:.3f} | {t['total']:.3f} |  {json.dumps(t)}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
