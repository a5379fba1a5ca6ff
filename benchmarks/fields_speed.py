"""Training speed of fields models: frames/s of full optimizer steps (forward, backward, Adam).

Usage: python benchmarks/fields_speed.py [--steps 30] [--warmup 5] [--device auto|cpu|cuda]
                                          [--json out.json] -- model=convlstm data.grid=32 ...
Each `--` separated group is one configuration (Hydra overrides of conf/train.yaml); several groups
are timed one after another, e.g. `-- model=convlstm -- model=mlp2d`. Prints a markdown table.
Peak CUDA memory is reported on GPUs. Batches come from the real FieldsDataModule (generated once,
outside the timed region).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hydra import compose, initialize_config_dir  # noqa: E402

from akira.cli import CONF_DIR  # noqa: E402
from akira.config import register_configs  # noqa: E402
from akira.run import build_datamodule, build_model, build_task  # noqa: E402
from akira.runinfo import write_json_atomic  # noqa: E402


def time_config(overrides: list[str], steps: int, warmup: int, device: torch.device) -> dict:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="train", overrides=overrides)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader())).to(device)
    model = build_model(cfg)
    task = build_task(cfg, model, dm).to(device)
    opt = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=1e-3,
                           fused=device.type == "cuda")
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step():
        with amp:
            loss = task._train_loss(batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    return {
        "config": " ".join(overrides), "params": sum(p.numel() for p in model.parameters()),
        "batch": int(batch.shape[0]), "frames_per_step": int(task.items_per_batch(batch)),
        "step_ms": seconds * 1e3, "frames_per_sec": task.items_per_batch(batch) / seconds,
        "peak_mem_gb": torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None,
    }


def main() -> None:
    argv = sys.argv[1:]
    groups, current, own = [], None, []
    for arg in argv:
        if arg == "--":
            current = []
            groups.append(current)
        elif current is None:
            own.append(arg)
        else:
            current.append(arg)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(own)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          (args.device if args.device != "auto" else "cpu"))
    register_configs()
    rows = [time_config(g, args.steps, args.warmup, device) for g in (groups or [[]])]
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"\ndevice: {name} | torch {torch.__version__} | {time.strftime('%Y-%m-%d')}\n")
    print("| config | params | batch | frames/step | step ms | frames/s | peak GB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        mem = f"{r['peak_mem_gb']:.2f}" if r["peak_mem_gb"] is not None else "-"
        print(f"| {r['config']} | {r['params']:,} | {r['batch']} | {r['frames_per_step']} | {r['step_ms']:.1f} | "
              f"{r['frames_per_sec']:,.0f} | {mem} |")
    if args.json:
        write_json_atomic(args.json, {"device": name, "torch": torch.__version__, "rows": rows})


if __name__ == "__main__":
    main()
