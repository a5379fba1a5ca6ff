"""Host (CPU) time per call of the fused band MLP at a tiny token count, where the GPU's work is negligible, so the
time is the launch path's: the module's forward and forward+backward (eager, bf16 autocast, seed widths, e ~ 24,
LayerNorm applied in the kernels) with `triton_support.CachedLaunch` on and off, and one kernel launch each way.
Needs a CUDA GPU with Triton.

    python benchmarks/band_mlp_host_overhead.py
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from band_mlp_tune import WIDTHS, problem  # noqa: E402  (benchmarks/, this script's directory)

from akira.models.lm import BandLayerNorm, BandMLP  # noqa: E402
from akira.models.lm import band_mlp_kernel as bk  # noqa: E402


def host_ms(fn, n: int = 200) -> float:
    """Mean host ms of fn() over n calls (after 10 warm-up calls), without waiting for the GPU between calls."""
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    ms = (time.perf_counter() - t) / n * 1e3
    torch.cuda.synchronize()
    return ms


def main() -> int:
    if not (torch.cuda.is_available() and bk.available()):
        raise SystemExit("needs a CUDA GPU and Triton")
    dev = torch.device("cuda")
    hidden, pairs, launch = problem(True, 64, dev)     # the params-matched band MLP, 64 tokens
    mlp = BandMLP(WIDTHS, tuple(hidden), impl="fused").to(dev)
    mlp.reset_parameters(0.02, 0.02)
    norm = BandLayerNorm(WIDTHS).to(dev)
    x = torch.randn(64, sum(WIDTHS), device=dev, requires_grad=True)
    group = bk._launch_groups(pairs)[0]
    cfg = bk.launch_config("fwd", group["BD"])
    print(f"# host ms per call, {torch.cuda.get_device_name()}, torch {torch.__version__}, Triton "
          f"{bk.triton.__version__}, 64 tokens\n| what | cached launch | Triton's launch |\n|---|---|---|")
    rows = {"one forward-kernel launch": lambda: launch["fwd"](group, cfg),
            "module forward": lambda: mlp(x, norm=norm),
            "module forward + backward": lambda: mlp(x, norm=norm).sum().backward()}
    for name, fn in rows.items():
        times = []
        for mode in ("1", "0"):
            os.environ["AKIRA_TRITON_CACHED_LAUNCH"] = mode
            with torch.autocast("cuda", dtype=torch.bfloat16):
                times.append(host_ms(fn, 1000 if name.startswith("one") else 200))
        print(f"| {name} | {times[0]:.3f} | {times[1]:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
