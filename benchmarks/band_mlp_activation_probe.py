"""How much of the fused band MLP's kernel time is its activation's arithmetic?

Times the three kernels (forward, dx, dW) of every launch group alone on N tokens at the params-matched expansion
(bf16, the settings `band_mlp_kernel.launch_config` gives), with the GELU the kernels use (`current`: packed bf16
arithmetic; `fp32`: the fp32 form, `model.fused_bf16_gelu=false`) or, for comparison only, another activation
swapped into the fp32 form's place (the packed one then off): libdevice's erf GELU (the kernels' form before
2026-12-03), the tanh-approximation GELU on the `tanh.approx` instruction, ReLU and the identity (the floor: matmuls
and memory only). The swapped activations change the function; they are measurements, not options. One process
per variant (Triton compiles a kernel once per process). Needs a CUDA GPU with Triton.

    python benchmarks/band_mlp_activation_probe.py [--variants current,fp32,libdevice,tanh,relu,identity]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from band_mlp_tune import problem, time_ms  # noqa: E402  (benchmarks/, this script's directory)

from akira.models.lm import band_mlp_kernel as bk  # noqa: E402

tl, triton = bk.tl, bk.triton

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

VARIANTS = {"current": None, "fp32": None, "libdevice": ("_libdevice", "_libdevice_grad"), "tanh": ("_gelu_tanh", "_gelu_tanh_grad"),
            "relu": ("_relu", "_relu_grad"), "identity": ("_identity", "_identity_grad")}


def measure(variant: str, n: int) -> dict[str, float]:
    """ms per kernel per launch group ("<BD>/<kernel>"), per kernel summed over groups, and the total."""
    if VARIANTS[variant]:
        fwd, grad = VARIANTS[variant]
        bk._gelu, bk._gelu_and_grad = globals()[fwd], globals()[grad]   # before the first compile
    _, pairs, launch = problem(True, n, torch.device("cuda"), gelu16=variant == "current")
    out: dict[str, float] = {}
    for g in bk._launch_groups(pairs):
        for kernel, run in launch.items():
            out[f"{g['BD']}/{kernel}"] = time_ms(lambda g=g, kernel=kernel, run=run: run(
                g, bk.launch_config(kernel, g["BD"])), reps=30)
    for k in launch:
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
