"""Launch settings of the fused band MLP's three Triton kernels, per launch group (padded band width).

Times each kernel (forward, dx, dW; `--kernels`) of each launch group alone on N tokens (CUDA events) in every setting of a grid
(token block x hidden tile x warps, then pipeline stages for the best), prints a table and the fastest setting per
(group, kernel) as the `akira.models.lm.band_mlp_kernel.TUNED` table, and writes it as JSON (``--out``), which
`lm_speed.py --fused-tuned FILE` loads for whole training steps. Needs a CUDA GPU with Triton.

    python benchmarks/band_mlp_tune.py --out benchmarks/results/<date>/band_mlp_tuned_<card>.json
"""
from __future__ import annotations

import argparse
import datetime
import itertools
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from akira.models.lm import band_mlp_kernel as bk  # noqa: E402
from akira.models.lm import lm_preset  # noqa: E402
from akira.models.lm.params import band_hidden_sizes  # noqa: E402
from akira.runinfo import write_json_atomic  # noqa: E402

WIDTHS = (128, 96, 80, 64, 64, 48, 32)
GRID = [{"block_m": bm, "block_h": bh, "warps": w, "stages": 2}
        for bm, bh, w in itertools.product((64, 128), (32, 64, 128), (4, 8))]


def time_ms(fn, reps: int) -> float:
    """Mean ms of fn() over reps calls after 3 warm-up calls (CUDA events around the whole batch)."""
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def _measure(fn, bd: int, kernel: str, cfg: dict, reps: int, rows: list) -> float | None:
    """Time fn (one kernel launch), print and record the row; None where the setting does not compile or fit."""
    try:
        ms = time_ms(fn, reps)
    except Exception as exc:  # noqa: BLE001 - a setting that does not fit (shared memory) is a result
        print(f"| {bd} | {kernel} | {cfg} | n/a ({type(exc).__name__}) |", flush=True)
        return None
    rows.append({"BD": bd, "kernel": kernel, **cfg, "ms": ms})
    print(f"| {bd} | {kernel} | {cfg} | {ms:.4f} |", flush=True)
    return ms


def problem(matched: bool, n: int, device: torch.device, gelu16: bool = True) -> tuple[list[int], tuple, dict]:
    """The seed widths' band MLP (params-matched or e = 4) with its band LayerNorms on n random tokens of an fp32
    residual stream and bf16 weights (as in the model under bf16 autocast): its hidden sizes, its (d, h) pairs
    and, per kernel ("fwd", "dx", "dw"), a function (launch group, setting) that launches it once."""
    d = sum(WIDTHS)
    hidden = band_hidden_sizes(lm_preset("band", band_widths=WIDTHS, d_model=d, params_matched=matched))
    pairs = tuple((w, bk.padded_hidden(h)) for w, h in zip(WIDTHS, hidden))       # the packed weights' layout
    tw, th = sum(a * b for a, b in pairs), sum(h for _, h in pairs)
    g = torch.Generator(device=device).manual_seed(0)
    bf, f32 = {"dtype": torch.bfloat16, "device": device}, {"dtype": torch.float32, "device": device}
    x, dy = torch.randn(n, d, generator=g, **f32), torch.randn(n, d, generator=g, **bf)
    w1f, w2tf = torch.randn(tw, generator=g, **bf) * 0.05, torch.randn(tw, generator=g, **bf) * 0.05
    ops = bk.Operands(x, w1f, torch.zeros(th, **bf), w2tf, torch.ones(d, **f32), torch.zeros(d, **f32), 1e-5, x,
                      0.0, pairs, bk.band_table(pairs).to(device), gelu16)
    y, xn, dx = torch.empty_like(dy), torch.empty_like(dy), torch.empty_like(x)
    splits = bk.CONFIG["dw_splits"]
    p_w1, p_w2t, p_b1 = torch.empty(splits, tw, **f32), torch.empty(splits, tw, **f32), torch.empty(splits, th, **f32)
    p_lnw, p_lnb = torch.zeros(bk.cdiv(n, 32), d, **f32), torch.zeros(bk.cdiv(n, 32), d, **f32)
    launch = {
        "fwd": lambda grp, cfg: bk.launch_fwd(grp, ops, y, xn, cfg),
        "dx": lambda grp, cfg: bk.launch_dx(grp, ops, xn, dy, dx, p_lnw, p_lnb, cfg),
        "dw": lambda grp, cfg: bk.launch_dw(grp, ops, xn, dy, p_w1, p_b1, p_w2t, cfg)}
    return list(hidden), pairs, launch


def tune(matched: bool, n: int, reps: int, device: torch.device, kernels: list[str], gelu16: bool = True) -> dict:
    """Tune ``kernels`` (`bk.KERNELS` names) per launch group; sums over the groups of the default and the
    fastest settings' times."""
    hidden, pairs, launch = problem(matched, n, device, gelu16)
    rows, tuned, default_ms, best_ms = [], {}, 0.0, 0.0
    for grp in bk._launch_groups(pairs):
        bd = grp["BD"]
        for kernel in kernels:
            run = launch[kernel]
            default = {k: bk.CONFIG[bk.KERNELS[kernel] + k] for k in bk.SETTINGS}

            def measure(cfg, grp=grp, kernel=kernel, run=run):
                return _measure(lambda: run(grp, cfg), grp["BD"], kernel, cfg, reps, rows)

            timed = [(measure(cfg), cfg) for cfg in GRID if cfg != default] + [(measure(default), default)]
            ms_default = timed[-1][0]
            best = min((t for t in timed if t[0] is not None), key=lambda t: t[0])
            staged = {**best[1], "stages": 3}
            ms3 = measure(staged)
            if ms3 is not None and ms3 < best[0]:
                best = (ms3, staged)
            default_ms += ms_default or 0.0
            best_ms += best[0]
            tuned.setdefault(bd, {}).update({bk.KERNELS[kernel] + k: v for k, v in best[1].items()})
    summary = {"matched": matched, "hidden": hidden, "tokens": n, "kernels": kernels, "default_ms": default_ms,
               "tuned_ms": best_ms}
    print(f"\nexpansion {sum(hidden) / sum(WIDTHS):.1f}: sum over groups and kernels, default settings {default_ms:.3f} ms, "
          f"fastest per group {best_ms:.3f} ms\nTUNED = {json.dumps(tuned)}\n", flush=True)
    return {"summary": summary, "tuned": tuned, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=64 * 512)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--kernels", default=",".join(bk.KERNELS),
                   help=f"comma-separated, of {','.join(bk.KERNELS)} (default: all)")
    p.add_argument("--bf16-gelu", action=argparse.BooleanOptionalAction, default=True,
                   help="the kernels' packed-bf16 GELU (model.fused_bf16_gelu)")
    p.add_argument("--config", default="", help="band_mlp_kernel.CONFIG overrides while tuning, e.g. 'dw_splits=4'")
    p.add_argument("--out", default=None, help="write the rows and the TUNED table (params-matched) as JSON")
    args = p.parse_args(argv)
    try:
        bk.override_config(args.config)
    except ValueError as exc:
        p.error(f"--config: {exc}")
    kernels = args.kernels.split(",")
    if unknown := set(kernels) - set(bk.KERNELS):
        p.error(f"--kernels: unknown {sorted(unknown)}; known: {list(bk.KERNELS)}")
    if not (torch.cuda.is_available() and bk.available()):
        p.error("needs a CUDA GPU and Triton")
    device = torch.device("cuda")
    meta = {"device": torch.cuda.get_device_name(device), "torch": torch.__version__,
            "triton": bk.triton.__version__, "date": datetime.date.today().isoformat(), "grid": GRID,
            "config": dict(bk.CONFIG), "bf16_gelu": args.bf16_gelu}
    print(f"# fused band MLP kernels alone, {meta['device']}, torch {meta['torch']}, Triton {meta['triton']}\n"
          "| BD | kernel | setting | ms |\n|---|---|---|---|", flush=True)
    out = {"meta": meta, "matched": tune(True, args.tokens, args.reps, device, kernels, args.bf16_gelu)}
    if args.out:
        write_json_atomic(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
