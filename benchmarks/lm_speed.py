"""Training throughput of the LM arms (tokens/s, step ms, peak memory, MFU), printed as a markdown table.

Full preset = the issue's setting: 6 layers / 512 / 8 heads / seq 512 / batch 64, bf16 autocast, torch.compile,
fused AdamW with the arm's named param groups, grad clipping 1.0, random tokens; 5 warm-up + 20 timed steps
(CUDA events around each step, each ending in a synchronisation: `step ms`, tokens/s), then the same number of
steps back to back with one synchronisation (`b2b ms`: no host time at each step's start, as in training without a
per-step sync). ``--preset tiny`` is a seconds-long CPU smoke check.

    python benchmarks/lm_speed.py                                # all arms, full preset, on the GPU
    python benchmarks/lm_speed.py --preset tiny --no-compile     # CPU smoke check
    python benchmarks/lm_speed.py --micro                        # band MLP / LayerNorm / wormhole kernels alone
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from akira.models.lm import (  # noqa: E402
    BandLayerNorm,
    BandMLP,
    CrossBandWormhole,
    LMConfig,
    Transformer,
    band_layout,
    band_mlp_kernel,
    lm_preset,
    pair_attention_kernel,
    wormhole_gate_kernel,
)
from akira.models.lm.params import band_hidden_sizes  # noqa: E402
from akira.runinfo import write_json_atomic  # noqa: E402
from akira.tasks.optim import build_optimizer, build_param_groups  # noqa: E402

# Dense (no sparsity) peak TFLOP/s by data type, from the vendors' datasheets. Matched by substring of
# torch.cuda.get_device_name(), first match wins (more specific names first).
PEAK_TFLOPS: list[tuple[str, dict[str, float]]] = [
    ("H200", {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    ("GH200", {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    ("H100 NVL", {"bf16": 835.5, "fp16": 835.5, "tf32": 417.5, "fp32": 60.0}),
    ("H100 PCIe", {"bf16": 756.5, "fp16": 756.5, "tf32": 378.0, "fp32": 51.2}),
    ("H100", {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9}),  # SXM, "NVIDIA H100 80GB HBM3"
    ("A100", {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5}),
    ("L40S", {"bf16": 362.1, "fp16": 362.1, "tf32": 183.0, "fp32": 91.6}),
    ("A10G", {"bf16": 70.0, "fp16": 70.0, "tf32": 35.0, "fp32": 31.2}),
    ("L4", {"bf16": 121.0, "fp16": 121.0, "tf32": 60.0, "fp32": 30.3}),
    ("RTX 4090", {"bf16": 165.2, "fp16": 165.2, "tf32": 82.6, "fp32": 82.6}),
    ("V100", {"fp16": 125.0, "fp32": 15.7}),
]


def peak_flops(device_name: str, dtype: str) -> float | None:
    """Peak FLOP/s of ``device_name`` for ``dtype`` (bf16 | fp16 | tf32 | fp32), None if unknown."""
    for key, table in PEAK_TFLOPS:
        if key in device_name:
            value = table.get(dtype)
            return value * 1e12 if value else None
    return None


# arm -> (model preset overrides, optimizer LR table)
ARMS: dict[str, tuple[dict, str | None]] = {
    "baseline": ({"mlp": "dense"}, "uniform"),
    "band_only": ({"mlp": "band"}, "uniform"),
    "difflr_only": ({"mlp": "dense_split"}, "v1"),
    "no_wormhole": ({"mlp": "band"}, "v1"),
    "full": ({"mlp": "band", "wormhole": True}, "v1"),
    "band_only_matched": ({"mlp": "band", "params_matched": True}, "uniform"),
    "no_wormhole_matched": ({"mlp": "band", "params_matched": True}, "v1"),
    "full_matched": ({"mlp": "band", "wormhole": True, "params_matched": True}, "v1"),
}
DEFAULT_ARMS = "baseline,band_only,difflr_only,no_wormhole,full"


def make_config(arm: str, args) -> LMConfig:
    over = dict(ARMS[arm][0])
    if args.preset == "tiny":
        base = lm_preset("tiny", max_seq_len=args.seq)
    else:
        base = lm_preset("baseline", vocab_size=args.vocab, max_seq_len=args.seq)
    over.update(dropout=args.dropout, bias=args.bias, tie_embeddings=args.tie, fused_loss=args.fused_loss)
    if args.band_impl and over["mlp"] == "band":
        over["band_impl"] = args.band_impl
    if over["mlp"] == "band":
        over["fused_bf16_gelu"] = args.fused_bf16_gelu
    if args.wormhole_attention and over.get("wormhole"):
        over["wormhole_attention"] = args.wormhole_attention
    if args.wormhole_gate and over.get("wormhole"):
        over["wormhole_gate"] = args.wormhole_gate
    return base.replace(**over)


class Timer:
    """Wall time of a region: CUDA events on the GPU, perf_counter on the CPU (ms)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __enter__(self):
        if self.cuda:
            self.a, self.b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.a.record()
        else:
            self.t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.b.record()
            torch.cuda.synchronize()
            self.ms = self.a.elapsed_time(self.b)
        else:
            self.ms = (time.perf_counter() - self.t) * 1e3


def bench_arm(arm: str, args, device: torch.device) -> dict:
    cfg = make_config(arm, args)
    torch.manual_seed(0)
    model = Transformer(cfg).to(device)
    groups = build_param_groups(model, lr_table=ARMS[arm][1], shared_lr=3e-4, weight_decay=0.1)
    opt = build_optimizer(groups, betas=(0.9, 0.95), fused=device.type == "cuda")
    step_model = torch.compile(model, mode=args.compile_mode) if args.compile else model
    amp = args.dtype in ("bf16", "fp16")
    amp_dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float16
    x = torch.randint(0, cfg.vocab_size, (args.batch, args.seq + 1), device=device)
    idx, tgt = x[:, :-1].contiguous(), x[:, 1:].contiguous()

    def step():
        if args.compile:   # a new iteration for CUDA graphs (compile mode reduce-overhead); a no-op otherwise
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            _, loss = step_model(idx, tgt)
        loss.backward()
        if args.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        loss = step()
    loss.item()
    warm_s = time.perf_counter() - t0
    if args.profile:
        profile_steps(step, device, arm)
    times = []
    for _ in range(args.steps):
        with Timer(device) as t:
            loss = step()
        times.append(t.ms)
    times.sort()
    step_ms = sum(times) / len(times)
    with Timer(device) as t:   # the same steps back to back, one synchronisation: no host time at each step's start
        for _ in range(args.steps):
            loss = step()
    back_to_back_ms = t.ms / args.steps
    tokens = args.batch * args.seq
    tok_s = tokens / (step_ms / 1e3)
    fpt = model.flops_per_token(args.seq)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    peak = peak_flops(dev_name, args.dtype) if device.type == "cuda" else None
    res = {
        "arm": arm, "params": model.num_parameters(False), "params_non_embedding": model.num_parameters(True),
        "band_hidden": list(model.band_hidden) if model.band_hidden else None,
        "band_impl": getattr(model.blocks[0].mlp, "impl", None),
        "fused_bf16_gelu": cfg.fused_bf16_gelu if cfg.mlp == "band" else None,
        "wormhole_attention": cfg.wormhole_attention if cfg.wormhole else None,
        "wormhole_gate": cfg.wormhole_gate if cfg.wormhole else None, "tokens_per_s": tok_s, "step_ms": step_ms,
        "step_ms_median": times[len(times) // 2], "step_ms_min": times[0], "step_ms_back_to_back": back_to_back_ms,
        "warmup_s": warm_s,
        "flops_per_token": fpt, "mfu": (fpt * tok_s / peak) if peak else None,
        "peak_mem_gb": torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None,
        "final_loss": loss.item(), "lr_table": ARMS[arm][1], "n_param_groups": len(groups),
    }
    return res


def release(device: torch.device, compiled: bool) -> None:
    """Free the last arm's model, optimizer state and compiled graphs."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if compiled:
        torch._dynamo.reset()


def profile_steps(step, device: torch.device, arm: str, n: int = 3, rows: int = 45) -> None:
    """Print the kernels that take the most device time over ``n`` steps: one line per kernel name, ms per step
    (GPU kernels only; on CPU the operator table)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(n):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    if device.type != "cuda":
        print(f"\n## profile of {arm} ({n} steps)\n", prof.key_averages().table(sort_by="self_cpu_time_total",
                                                                              row_limit=rows), flush=True)
        return
    per_kernel: dict[str, list[float]] = {}
    for ev in prof.events():   # kernels only: GPU-side user annotations (the optimizer's step range) span others
        if ev.device_type == DeviceType.CUDA and not getattr(ev, "is_user_annotation", False):
            t = per_kernel.setdefault(ev.name, [0.0, 0])
            t[0], t[1] = t[0] + ev.device_time_total / 1e3 / n, t[1] + 1
    total = sum(t for t, _ in per_kernel.values())
    lines = [f"\n## profile of {arm}: GPU kernels, ms per step (mean of {n} steps; total {total:.2f} ms)",
             "| ms/step | % | launches/step | kernel |", "|---|---|---|---|"]
    for name, (t, k) in sorted(per_kernel.items(), key=lambda kv: -kv[1][0])[:rows]:
        lines.append(f"| {t:.3f} | {100 * t / total:.1f} | {k / n:g} | {name[:110]} |")
    print("\n".join(lines), flush=True)


def _time_fwd_bwd(fn, inputs: list[torch.Tensor], args, device: torch.device) -> float:
    """Mean ms of ``fn(*inputs)`` forward + backward (of the output's sum) under the run's autocast."""
    amp = args.dtype == "bf16"

    def once():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            y = fn(*inputs)
        y.float().sum().backward()

    for _ in range(3):
        once()
    ts = []
    for _ in range(args.steps):
        with Timer(device) as t:
            once()
        ts.append(t.ms)
    return sum(ts) / len(ts)


def bench_micro(args, device: torch.device) -> list[dict]:
    """Band MLP implementations, the band LayerNorm vs a per-band loop, the wormhole and its attention alone (backends, padding, grouped K/V), forward + backward, each alone."""
    widths = (128, 96, 80, 64, 64, 48, 32) if args.preset == "full" else lm_preset("tiny").band_widths
    d = sum(widths)
    n = args.batch * args.seq
    x = torch.randn(n, d, device=device, requires_grad=True)
    rows = []

    def timeit(name, fn, inputs=None, compile=args.compile):
        try:
            ms = _time_fwd_bwd(torch.compile(fn) if compile else fn, inputs or [x], args, device)
        except Exception as exc:  # noqa: BLE001 - a backend that refuses a shape is a result, not a crash
            print(f"| {name} | n/a ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}) |", flush=True)
            ms = None
        rows.append({"kernel": name, "ms": ms})
        if ms is not None:
            print(f"| {name} | {ms:.3f} |", flush=True)
        if compile:
            torch._dynamo.reset()

    parts = {p.strip() for p in args.micro_parts.split(",")}
    print(f"| kernel (fwd+bwd, {n} tokens) | ms |\n|---|---|")
    for matched in (False, True) if "mlp" in parts else ():
        cfg = lm_preset("band", band_widths=widths, d_model=d, params_matched=matched)
        hidden = band_hidden_sizes(cfg)
        e = sum(hidden) / d
        for impl in ("block_diag", "bmm", "loop"):
            mlp = BandMLP(widths, hidden, impl=impl).to(device)
            mlp.reset_parameters(0.02, 0.02)
            timeit(f"band MLP e={e:.1f} {impl}", mlp)
    if "fused" in parts and device.type == "cuda" and band_mlp_kernel.available():
        bench_micro_fused_mlp(widths, timeit, device)
    if "mlp" in parts:
        dense = torch.nn.Sequential(torch.nn.Linear(d, 4 * d), torch.nn.GELU(), torch.nn.Linear(4 * d, d))
        timeit("dense MLP e=4 (baseline)", dense.to(device))
    if "ln" in parts:
        bench_micro_layernorm(widths, timeit, device)
    c = min(widths) // 2
    if "wormhole" in parts:
        x3 = torch.randn(args.batch, args.seq, d, device=device, requires_grad=True)
        wh = CrossBandWormhole(widths, c).to(device)
        wh.reset_parameters(0.02, 0.02)
        timeit("wormhole (whole module, default gate)", wh, [x3])
        if device.type == "cuda" and wormhole_gate_kernel.available():
            bench_micro_wormhole_gate(wh, x3, timeit)
    if "attention" in parts and device.type == "cuda":
        bench_micro_attention(args, device, len(widths), c, timeit)
    return rows


# Launch settings of the wormhole's Triton gate compared by --micro (part "wormhole"): the default first.
WORMHOLE_GATE_CONFIGS = [{}, {"fwd_elems": 32}, {"bwd_elems": 16}, {"bwd_blocks": 4}, {"bwd_blocks": 16},
                         {"bwd_wide_warps": 4}]


def bench_micro_wormhole_gate(wh: CrossBandWormhole, x: torch.Tensor, timeit) -> None:
    """The wormhole's gated sum over sources alone (torch, compiled, vs the Triton op in several launch settings)
    on the module's own slot outputs, and the whole module with the Triton gate."""
    with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16):
        u, gate_x, _ = wh.slot_inputs(x)
    u, gate_x = u.requires_grad_(), gate_x.requires_grad_()

    def torch_gate(u, g):
        return wh._gated_sum(u, g, wh._gate_weights()[1])

    def triton_gate(u, g):
        return wh._gated_sum_triton(u, g, wh._gate_weights()[1])

    timeit("wormhole gated sum, torch", torch_gate, [u, gate_x])
    default = dict(wormhole_gate_kernel.CONFIG)
    for over in WORMHOLE_GATE_CONFIGS:     # compiled too (the weight fold around the op), so equal harness
        wormhole_gate_kernel.CONFIG.update({**default, **over})
        timeit("wormhole gated sum, Triton " + (" ".join(f"{k}={v}" for k, v in over.items()) or "default"),
               triton_gate, [u, gate_x])
    wormhole_gate_kernel.CONFIG.update(default)
    for name, fn in (("torch", torch_gate), ("Triton", triton_gate)):
        step = torch.compile(fn)

        def fwd_bwd(step=step):
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                y = step(u, gate_x)
            y.float().sum().backward()

        fwd_bwd()
        profile_steps(fwd_bwd, x.device, f"wormhole gated sum, {name}", rows=14)
        torch._dynamo.reset()
    for gate in ("torch", "triton"):
        wh.gate = gate
        timeit(f"wormhole (whole module), {gate} gate", wh, [x])
    wh.gate = "auto"


def _fused_config(**over) -> dict:
    """The fused band MLP's default launch configuration (before this run's --fused-config) with ``over`` set."""
    return {**_FUSED_DEFAULT, **over}


_FUSED_DEFAULT = dict(band_mlp_kernel.CONFIG)
# Launch configurations of the fused band MLP compared by --micro (part "fused"): the default (the per-width TUNED
# settings where measured), the flat CONFIG settings for every width, one launch per band. Single kernels in
# many settings are timed by benchmarks/band_mlp_tune.py (which replaced the longer list here; the settings it
# replaced are in RESULTS.md: 128-token blocks, 128-unit hidden tiles, 8 warps in the dW kernel, more dW splits).
FUSED_MLP_CONFIGS = [
    _fused_config(),
    _fused_config(tuned=0),
    _fused_config(grouped=0),
]


def bench_micro_fused_mlp(widths: tuple[int, ...], timeit, device: torch.device) -> None:
    """`band_impl=fused` (Triton) at e=4 and the params-matched expansion, in several launch configurations,
    beside the loop it would replace; then a kernel profile of the default configuration."""
    d = sum(widths)
    default = dict(band_mlp_kernel.CONFIG)
    for matched in (False, True):
        hidden = band_hidden_sizes(lm_preset("band", band_widths=widths, d_model=d, params_matched=matched))
        e = sum(hidden) / d
        ref = BandMLP(widths, hidden, impl="loop").to(device)
        ref.reset_parameters(0.02, 0.02)
        timeit(f"band MLP e={e:.1f} loop", ref)
        mlp = BandMLP(widths, hidden, impl="fused").to(device)
        mlp.load_state_dict(ref.state_dict())
        for cfg in FUSED_MLP_CONFIGS:
            band_mlp_kernel.CONFIG.update(cfg)
            timeit(f"band MLP e={e:.1f} fused " + " ".join(f"{k}={v}" for k, v in cfg.items()), mlp, None, False)
        band_mlp_kernel.CONFIG.update(default)
        x = torch.randn(64 * 512, d, device=device, requires_grad=True)

        def fwd_bwd(mlp=mlp, x=x):
            with torch.autocast(device.type, dtype=torch.bfloat16):
                y = mlp(x)
            y.float().sum().backward()

        profile_steps(fwd_bwd, device, f"fused band MLP e={e:.1f}, default configuration")


def bench_micro_layernorm(widths: tuple[int, ...], timeit, device: torch.device) -> None:
    d = sum(widths)
    ln = BandLayerNorm(widths).to(device)
    timeit("band LayerNorm (chunked, vectorised)", ln)

    def loop_ln(z):
        return torch.cat([torch.nn.functional.layer_norm(zi, (zi.shape[-1],), w, b)
                          for zi, w, b in zip(z.split(widths, -1), ln.weight, ln.bias)], -1)

    timeit("band LayerNorm (per-band loop)", loop_ln)
    lay = band_layout(widths)
    gather, mask, flat, size = (lay[k].to(device) for k in ("gather", "mask", "flat", "widths"))

    def padded_ln(z):  # the implementation before 2026-12-02 (#3): padded (..., nb, wmax) gathers
        zp = torch.nn.functional.pad(z.float(), (0, 1))[..., gather]
        mean = zp.sum(-1, keepdim=True) / size[:, None]
        zc = (zp - mean) * mask
        var = (zc * zc).sum(-1, keepdim=True) / size[:, None]
        y = (zc * torch.rsqrt(var + 1e-5)).flatten(-2)[..., flat]
        return (y * torch.cat(list(ln.weight)) + torch.cat(list(ln.bias))).to(z.dtype)

    timeit("band LayerNorm (padded gathers, previous)", padded_ln)
    timeit("LayerNorm 512 (baseline)", torch.nn.LayerNorm(d).to(device))


PAIR_ATTENTION_CONFIGS = [  # Triton launch configurations of the pair attention tried by --micro
    {"block_m": 64, "block_n": 64, "warps": 4},
    {"block_m": 128, "block_n": 64, "warps": 4},
    {"block_m": 128, "block_n": 128, "warps": 8},
    {"block_m": 64, "block_n": 128, "warps": 4},
]


def bench_micro_attention(args, device: torch.device, nb: int, c: int, timeit) -> None:
    """The wormhole's pair attention alone, H = nb (nb - 1) heads of q/k dim c and v dim 2c, several ways; and the
    main attention (8 x 64) for scale."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.functional import pad
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    b, s, h = args.batch, args.seq, nb * (nb - 1)

    def t(*shape):
        return torch.randn(*shape, device=device, dtype=torch.bfloat16, requires_grad=True)

    q, k, v = t(b, h, s, c), t(b, h, s, c), t(b, h, s, 2 * c)
    kv_q, kv_k, kv_v = t(b, h, s, c), t(b, nb, s, c), t(b, nb, s, 2 * c)
    backends = {"default": None, "cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION}
    for name, backend in backends.items():
        def padded(q, k, v, backend=backend):
            with sdpa_kernel(backend) if backend is not None else contextlib.nullcontext():
                return sdpa(pad(q, (0, c)), pad(k, (0, c)), v, is_causal=True, scale=c ** -0.5)

        def unpadded(q, k, v, backend=backend):
            with sdpa_kernel(backend) if backend is not None else contextlib.nullcontext():
                return sdpa(q, k, v, is_causal=True, scale=c ** -0.5)

        def grouped(q, k, v, backend=backend):
            with sdpa_kernel(backend) if backend is not None else contextlib.nullcontext():
                return sdpa(pad(q, (0, c)), pad(k, (0, c)), v, is_causal=True, scale=c ** -0.5, enable_gqa=True)

        timeit(f"wormhole attention {h} heads, q/k padded {c}->{2 * c}, {name}", padded, [q, k, v], False)
        timeit(f"wormhole attention {h} heads, q/k {c} unpadded, {name}", unpadded, [q, k, v], False)
        timeit(f"wormhole attention {h} q heads / {nb} k-v heads (GQA), padded, {name}", grouped,
               [kv_q, kv_k, kv_v], False)
    if pair_attention_kernel.available():
        default = dict(pair_attention_kernel.CONFIG)
        for cfg in PAIR_ATTENTION_CONFIGS:
            pair_attention_kernel.CONFIG.update(cfg)
            timeit(f"wormhole attention {h} heads, Triton pair_attention " + " ".join(
                f"{k}={v}" for k, v in cfg.items()), lambda q, k, v: pair_attention_kernel.attention(q, k, v),
                [q, k, v], False)
        pair_attention_kernel.CONFIG.update(default)
    mq, mk, mv = t(b, 8, s, 64), t(b, 8, s, 64), t(b, 8, s, 64)
    timeit("main attention 8 x 64 (default backend)", lambda q, k, v: sdpa(q, k, v, is_causal=True),
           [mq, mk, mv], False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", default=DEFAULT_ARMS, help=f"comma list of {sorted(ARMS)} (or 'all')")
    p.add_argument("--preset", choices=("tiny", "full"), default="full")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=5, help="warm-up steps (compilation happens here)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--compile-mode", default=None,
                   choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
                   help="torch.compile mode of the model (default: torch's default)")
    p.add_argument("--batch", type=int, default=None, help="default 64 (full) / 4 (tiny)")
    p.add_argument("--seq", type=int, default=None, help="default 512 (full) / 32 (tiny)")
    p.add_argument("--vocab", type=int, default=50304, help="full preset vocab (GPT-2 50257 padded to 64)")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--bias", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--tie", action=argparse.BooleanOptionalAction, default=False, help="tie the LM head")
    p.add_argument("--clip", type=float, default=1.0, help="grad-norm clipping (0: off)")
    p.add_argument("--fused-loss", action=argparse.BooleanOptionalAction, default=False,
                   help="model.fused_loss: head + cross-entropy in chunks, no (tokens x vocab) logits")
    p.add_argument("--band-impl", choices=("auto", "block_diag", "bmm", "loop", "fused"), default=None)
    p.add_argument("--fused-bf16-gelu", action=argparse.BooleanOptionalAction, default=True,
                   help="model.fused_bf16_gelu: the fused band MLP's GELU in packed bf16 arithmetic")
    p.add_argument("--fused-config", default="",
                   help="band_mlp_kernel.CONFIG overrides for --band-impl fused, e.g. 'block_h=64,stages=2'")
    p.add_argument("--fused-tuned", default=None,
                   help="JSON written by benchmarks/band_mlp_tune.py: its per-width settings replace "
                        "those of band_mlp_kernel.TUNED")
    p.add_argument("--wormhole-attention", choices=("sdpa", "triton"), default=None,
                   help="model.wormhole_attention of the wormhole arms")
    p.add_argument("--wormhole-gate", choices=("auto", "torch", "triton"), default=None,
                   help="model.wormhole_gate of the wormhole arms")
    p.add_argument("--dtype", choices=("bf16", "fp32"), default=None, help="default bf16 on CUDA, fp32 on CPU")
    p.add_argument("--device", default=None)
    p.add_argument("--micro", action="store_true", help="time the band MLP / LayerNorm / wormhole kernels alone")
    p.add_argument("--micro-parts", default="mlp,ln,wormhole,attention",
                   help="which --micro groups: comma list of mlp, fused (the Triton band MLP), ln, wormhole, "
                        "attention")
    p.add_argument("--profile", action="store_true", help="print a kernel profile of each arm")
    p.add_argument("--out", default=None, help="write results JSON here")
    args = p.parse_args(argv)

    try:
        band_mlp_kernel.override_config(args.fused_config)
    except ValueError as exc:
        p.error(f"--fused-config: {exc}")
    if args.fused_tuned:
        tuned = json.loads(Path(args.fused_tuned).read_text())["matched"]["tuned"]
        for bd, cfg in tuned.items():   # the file may tune some kernels only: the others keep TUNED's settings
            band_mlp_kernel.TUNED.setdefault(int(bd), {}).update(cfg)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    args.batch = args.batch or (64 if args.preset == "full" else 4)
    args.seq = args.seq or (512 if args.preset == "full" else 32)
    args.dtype = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    arms = list(ARMS) if args.arms == "all" else [a.strip() for a in args.arms.split(",") if a.strip()]
    bad = [a for a in arms if a not in ARMS]
    if bad:
        p.error(f"--arms: unknown {bad}; choose from {sorted(ARMS)}")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    meta = {"device": dev_name, "torch": torch.__version__, "date": datetime.date.today().isoformat(),
            "preset": args.preset, "batch": args.batch, "seq": args.seq, "dtype": args.dtype,
            "compile": args.compile, "compile_mode": args.compile_mode, "steps": args.steps, "warmup": args.warmup, "dropout": args.dropout,
            "bias": args.bias, "tied_head": args.tie, "clip": args.clip,
            "fused_mlp_config": dict(band_mlp_kernel.CONFIG) if band_mlp_kernel.available() else None,
            "fused_mlp_tuned": dict(band_mlp_kernel.TUNED) if band_mlp_kernel.available() else None,
            "peak_flops": peak_flops(dev_name, args.dtype) if device.type == "cuda" else None}
    print(f"# LM training throughput on {dev_name}, torch {torch.__version__}, {args.preset} preset, batch "
          f"{args.batch} x seq {args.seq}, {args.dtype}, compile={args.compile}, {args.warmup}+{args.steps} steps",
          flush=True)
    out = {"meta": meta}
    if args.micro:
        out["micro"] = bench_micro(args, device)
    else:
        results = []
        print("| arm | params | non-emb | band impl | tokens/s | step ms | b2b ms | peak GB | MFU | vs baseline |\n"
              "|---|---|---|---|---|---|---|---|---|---|", flush=True)
        for arm in arms:
            r = bench_arm(arm, args, device)
            release(device, args.compile)
            results.append(r)
            base = next((x for x in results if x["arm"] == "baseline"), None)
            rel = f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}" if base else "-"
            mem = f"{r['peak_mem_gb']:.1f}" if r["peak_mem_gb"] is not None else "-"
            mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
            print(f"| {arm} | {r['params'] / 1e6:.2f}M | {r['params_non_embedding'] / 1e6:.2f}M | "
                  f"{r['band_impl'] or '-'} | {r['tokens_per_s']:,.0f} | {r['step_ms']:.1f} | "
                  f"{r['step_ms_back_to_back']:.1f} | {mem} | {mfu} | {rel} |", flush=True)
        out["results"] = results
    if args.out:
        write_json_atomic(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
