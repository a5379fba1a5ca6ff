"""Quality of next-frame predictors on the 11 synthetic patterns (the `unseen` protocol) at a fixed budget.

Every (pattern, seed, model) job is a real `akira.run.train` run (same task, data, metrics as the CLI)
with `trainer.max_steps=--steps`; parameter-free baselines (copy-last, linear extrapolation) come from
the same test batches of every run. Jobs run in `--workers` processes (sharing one GPU, or the CPU).
Writes `<out>/quality.json` (every job's metrics, appended as jobs finish) and prints two markdown
tables: 1-step and 10-step rollout MSE per pattern (mean ± std over seeds) for each model beside
copy-last and linear extrapolation, and the spectral2d ablation table.

  python benchmarks/fields_quality.py --out results/quality --steps 500 --seeds 0 1 2 --workers 8
  python benchmarks/fields_quality.py --table results/quality/quality.json   # tables only
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from akira.atomic import atomic_write_json  # noqa: E402

PATTERNS = ["blob", "interference", "switching", "double_slit", "counter_rotate", "chirp", "phase_jump",
            "noisy_motion", "bifurcation", "wave_collision", "concentric"]
MODELS = {"spectral2d": ["model=spectral2d"], "mlp2d": ["model=mlp2d"], "convlstm": ["model=convlstm"]}
ABLATIONS = {
    "spectral2d": ["model=spectral2d"],
    "no_temporal": ["model=spectral2d", "model.use_temporal=false"],
    "no_neighbor": ["model=spectral2d", "model.use_neighbor=false"],
    "no_wormhole": ["model=spectral2d", "model.use_wormhole=false"],
    "softmax": ["model=spectral2d", "model.selection=softmax"],
}
KEYS = ["test/mse", "test/mse_copy_last", "test/mse_linear", "test/rollout_mse_h10",
        "test/rollout_mse_h10_copy_last", "test/rollout_mse_h10_linear", "test_reference/mse", "params_total",
        "train_seconds", "throughput/frames_per_sec"]


def run_job(job: dict) -> dict:
    """One training run in this process (a fresh Hydra compose; Hydra runtime set as the CLI would)."""
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("AKIRA_BENCH_THREADS", "1"))))
    from akira.run import train
    from tests.conftest import compose_config

    run_dir = Path(job["out"]) / "runs" / job["name"]
    start = time.time()
    cfg = compose_config(job["overrides"], run_dir=run_dir)
    metrics = train(cfg)
    return {**{k: v for k, v in job.items() if k != "out"}, "wall_seconds": time.time() - start,
            "metrics": {k: metrics.get(k) for k in KEYS}}


def jobs_for(args) -> list[dict]:
    common = [f"trainer.max_steps={args.steps}", "task.loss_on=clip", f"trainer.val_check_interval={args.steps}",
              "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "logger=none",
              "callbacks=none", f"data.batch_size={args.batch}", f"data.grid={args.grid}",
              f"data.test_streams={args.test_streams}", "data.val_streams=32", *args.extra]
    if args.accelerator == "gpu":
        common += ["trainer=gpu"]
    jobs = []
    for seed in args.seeds:  # seed-major: an interrupted benchmark still covers every pattern
        for pattern in args.patterns:
            for group, table in (("models", {m: MODELS[m] for m in args.models}), ("ablation", ABLATIONS)):
                if group == "ablation" and pattern not in args.ablation_patterns:
                    continue
                for name, overrides in table.items():
                    if group == "ablation" and name == "spectral2d":
                        continue  # the models table has it
                    jobs.append({"group": group, "model": name, "pattern": pattern, "seed": seed,
                                 "name": f"{group}-{name}-{pattern}-s{seed}", "out": args.out,
                                 "overrides": [*common, *overrides, f"data.pattern={pattern}", f"seed={seed}"]})
    return jobs


def _fmt(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.2e} ± {sd:.1e}" + ("" if len(values) == 3 else f" (n={len(values)})")


def scores(results: list[dict]) -> dict[tuple[str, str, str, int], tuple[float, float]]:
    """`{(group, model, pattern, seed): (1-step MSE, 10-step rollout MSE)}`; copy-last and linear extrapolation
    (scored on the test clips of every "models" run) appear under the group "baseline"."""
    by = {}
    for r in results:
        for model in [r["model"]] + (["copy_last", "linear"] if r["group"] == "models" else []):
            if model in ("copy_last", "linear"):
                one = r["metrics"][f"test/mse_{model}"]
                ten = r["metrics"][f"test/rollout_mse_h10_{model}"]
                key = ("baseline", model, r["pattern"], r["seed"])
            else:
                one, ten = r["metrics"]["test/mse"], r["metrics"]["test/rollout_mse_h10"]
                key = (r["group"], model, r["pattern"], r["seed"])
            by[key] = (one, ten)
    return by


def tables(results: list[dict]) -> str:
    by = scores(results)
    out = []
    groups = [("models", sorted({k[1] for k in by if k[0] == "models"}) + ["copy_last", "linear"]),
              ("ablation", ["spectral2d"] + sorted({k[1] for k in by if k[0] == "ablation"}))]
    for group, models in groups:
        patterns = [p for p in PATTERNS if any(k[2] == p and (k[0] == group or group == "models") for k in by)]
        if group == "ablation":
            patterns = [p for p in PATTERNS if any(k[0] == "ablation" and k[2] == p for k in by)]
        if not patterns:
            continue
        for horizon, idx in (("1-step", 0), ("10-step rollout", 1)):
            out.append(f"\n**{group}: {horizon} MSE, unseen protocol (mean ± std over seeds)**\n")
            out.append("| pattern | " + " | ".join(models) + " |")
            out.append("|---|" + "---|" * len(models))
            for p in patterns:
                cells = []
                for m in models:
                    grp = "baseline" if m in ("copy_last", "linear") else ("models" if m == "spectral2d" else group)
                    vals = [v[idx] for k, v in by.items() if k[0] == grp and k[1] == m and k[2] == p]
                    cells.append(_fmt(vals))
                out.append(f"| {p} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def paired_table(results: list[dict], model: str = "spectral2d") -> str:
    """`model` against every other predictor, seed by seed (same seed = same training data and test clips):
    per pattern, "wins/n (geometric-mean MSE ratio)" at 1 step; ratio < 1 = `model` better."""
    by = scores(results)
    own = {(p, seed): v[0] for (g, m, p, seed), v in by.items() if g == "models" and m == model}
    rivals = {(m, p, seed): v[0] for (g, m, p, seed), v in by.items() if g in ("models", "baseline") and m != model}
    names = sorted({m for (g, m, _, _) in by if g == "models" and m != model}) + ["copy_last", "linear"]
    out = [f"\n**{model} vs each predictor, paired by seed: 1-step wins / seeds (geometric-mean MSE ratio)**\n",
           "| pattern | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    totals = {n: [0, 0] for n in names}
    for p in [p for p in PATTERNS if any(k[0] == p for k in own)]:
        cells = []
        for n in names:
            pairs = [(v, rivals[(n, p, seed)]) for (pat, seed), v in sorted(own.items())
                     if pat == p and (n, p, seed) in rivals]
            if not pairs:
                cells.append("-")
                continue
            wins = sum(a < b for a, b in pairs)
            ratio = math.exp(statistics.fmean(math.log(a / b) for a, b in pairs))
            totals[n][0] += wins
            totals[n][1] += len(pairs)
            cells.append(f"{wins}/{len(pairs)} ({ratio:.2f})")
        out.append(f"| {p} | " + " | ".join(cells) + " |")
    out.append("| **all** | " + " | ".join(f"**{w}/{t}**" for w, t in totals.values()) + " |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/bench_quality")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--grid", type=int, default=32)
    parser.add_argument("--test-streams", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--patterns", nargs="+", default=PATTERNS)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--ablation-patterns", nargs="*", default=["blob", "interference", "concentric"])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--accelerator", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--time-budget", type=float, default=float("inf"), help="stop submitting after s")
    parser.add_argument("--table", default=None, help="only print the tables of an existing quality.json")
    parser.add_argument("extra", nargs="*", help="extra Hydra overrides for every job")
    args = parser.parse_args()
    if args.table:
        results = json.loads(Path(args.table).read_text())
        print(tables(results))
        print(paired_table(results))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "quality.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    done = {r["name"] for r in results}
    jobs = [j for j in jobs_for(args) if j["name"] not in done]
    start = time.time()
    import multiprocessing as mp

    with ProcessPoolExecutor(max_workers=args.workers, mp_context=mp.get_context("spawn")) as pool:
        pending = {}
        queue = list(jobs)
        while queue or pending:
            while queue and len(pending) < args.workers and time.time() - start < args.time_budget:
                job = queue.pop(0)
                pending[pool.submit(run_job, job)] = job
            if not pending:
                break
            for fut in as_completed(list(pending)):
                job = pending.pop(fut)
                try:
                    results.append(fut.result())
                    atomic_write_json(results_path, results)
                    print(f"[{time.time() - start:6.0f}s] done {job['name']}", flush=True)
                except Exception as exc:  # noqa: BLE001 - report and go on
                    print(f"[{time.time() - start:6.0f}s] FAILED {job['name']}: {exc}", flush=True)
                break
    print(f"\n{len(results)} runs, {time.time() - start:.0f}s; skipped (budget): {len(queue)}")
    print(tables(results))
    print(paired_table(results))


if __name__ == "__main__":
    main()
