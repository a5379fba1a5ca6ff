"""Instructions per hidden unit in the main loops of the fused band MLP's three Triton kernels, compiled for
Hopper (sm_90) without a GPU.

The backward kernels are bound by instruction issue (benchmarks/RESULTS.md), so the count of SASS instructions in
a kernel's main loop per hidden unit a thread handles (block_m x block_h / threads per iteration) predicts their
time; this script compiles each kernel with the launch settings `band_mlp_kernel.launch_config` gives (or
``--setting``), disassembles it with the cuobjdump that ships with Triton and prints the count and the most
frequent opcodes. Needs Triton (a CUDA build of torch has it; on a CPU-only machine ``pip install triton``), not a
GPU. Specialisation as at a real launch of the params-matched model: bf16 weights, fp32 residual stream, 16-byte
aligned pointers, token count and width divisible by 16.

    python benchmarks/band_mlp_sass_count.py [--kernels fwd,dx,dw] [--widths 128,64,32] [--setting BH,BM,WARPS,STAGES]
"""
from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from akira.models.lm import band_mlp_kernel as bk  # noqa: E402

FP32_POINTERS = {"x_ptr", "lnw_ptr", "lnb_ptr", "dx_ptr", "dlnw_ptr", "dlnb_ptr", "dw1_ptr", "db1_ptr", "dw2t_ptr"}
DIVISIBLE_INTS = {"N", "D", "TW", "rows_per_split"}
LINE = re.compile(r"\s*/\*([0-9a-f]+)\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)(\.[\w.]*)?\s*(.*?);")


def compile_sm90(kernel: str, width: int, cfg: dict[str, int], dropout: bool = False, gelu16: bool = True):
    """The compiled kernel (Triton's CompiledKernel) for a launch group of padded width ``width`` (``dropout``:
    with hidden dropout; ``gelu16``: the packed-bf16 GELU)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    fn = {"fwd": bk._fwd_kernel, "dx": bk._dx_kernel, "dw": bk._dw_kernel}[kernel]
    const = {"HAS_LN": True, "HAS_LN_BIAS": True, "HAS_BIAS": True, "DROP": dropout, "BM": cfg["block_m"],
             "BD": width, "BH": cfg["block_h"], "PREC": "tf32", "ALIGN": True, "EVEN_M": True,
             "G16": gelu16}
    const = {k: v for k, v in const.items() if k in fn.arg_names}
    fp32 = FP32_POINTERS - ({"x_ptr"} if kernel == "dw" else set())   # the dW kernel reads the bf16 normalised input
    sig = {}
    for name in fn.arg_names:
        if name in const:
            sig[name] = "constexpr"
        elif name.endswith("_ptr"):
            sig[name] = {"seed_ptr": "*i64", "tab_ptr": "*i32"}.get(name, "*fp32" if name in fp32 else "*bf16")
        else:
            sig[name] = "fp32" if name in ("p_drop", "eps") else "i32"
    attrs = {(fn.arg_names.index(k),): [["tt.divisibility", 16]] for k in sig
             if k.endswith("_ptr") or k in DIVISIBLE_INTS}
    src = ASTSource(fn=fn, signature=sig, constexprs={(fn.arg_names.index(k),): v for k, v in const.items()},
                    attrs=attrs)
    return bk.triton.compile(src, target=GPUTarget("cuda", 90, 32),
                             options={"num_warps": cfg["warps"], "num_stages": cfg["stages"]})


def main_loop_opcodes(cubin: bytes) -> list[str]:
    """Opcodes of the main loop of a cubin's SASS (`loop_opcodes`), disassembled by Triton's cuobjdump."""
    import triton
    cuobjdump = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        return loop_opcodes(subprocess.run([str(cuobjdump), "-sass", f.name], capture_output=True, text=True,
                                           check=True).stdout)


def loop_opcodes(sass: str) -> list[str]:
    """Opcodes (predicates and modifiers dropped) of the body of the longest backward branch in a SASS listing:
    the kernel's main loop."""
    ins = [(int(m.group(1), 16), m.group(3), m.group(5)) for m in map(LINE.match, sass.splitlines()) if m]
    loop = (0, -1)
    for addr, op, rest in ins:
        target = re.match(r"(0x[0-9a-f]+)", rest.strip()) if op == "BRA" else None
        if target and int(target.group(1), 16) < addr and addr - int(target.group(1), 16) > loop[1] - loop[0]:
            loop = (int(target.group(1), 16), addr)
    return [op for addr, op, _ in ins if loop[0] <= addr <= loop[1]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kernels", default="fwd,dx,dw")
    p.add_argument("--widths", default="128,64,32", help="padded widths of the launch groups")
    p.add_argument("--dropout", action="store_true", help="the kernels' dropout variant")
    p.add_argument("--bf16-gelu", action=argparse.BooleanOptionalAction, default=True,
                   help="the kernels' packed-bf16 GELU (model.fused_bf16_gelu)")
    p.add_argument("--setting", default=None, help="block_h,block_m,warps,stages for every kernel (default: "
                                                    "launch_config's)")
    args = p.parse_args(argv)
    if not bk.available():
        p.error("needs Triton")
    print("| kernel | width | setting | loop instructions per hidden unit | most frequent (per unit) |\n"
          "|---|---|---|---|---|")
    for kernel in args.kernels.split(","):
        for width in map(int, args.widths.split(",")):
            cfg = bk.launch_config(kernel, width)
            if args.setting:
                cfg = dict(zip(("block_h", "block_m", "warps", "stages"), map(int, args.setting.split(","))))
            ops = main_loop_opcodes(compile_sm90(kernel, width, cfg, args.dropout, args.bf16_gelu).asm["cubin"])
            units = cfg["block_m"] * cfg["block_h"] / (32 * cfg["warps"])    # per thread per iteration
            top = ", ".join(f"{op} {n / units:.2f}" for op, n in collections.Counter(ops).most_common(8))
            print(f"| {kernel} | {width} | {cfg} | {len(ops) / units:.1f} | {top} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
