"""Sweep report: `python -m akira.report <sweep dir> [--out DIR]` writes `report.md`, `report.csv` and PNG
plots for any sweep directory of this framework (LM ablations, fields experiments, ...).

A job is a directory with `run.json` (`.hydra/overrides.yaml` as a fallback) below the sweep dir. Its arm is
its command-line overrides minus `seed`, `ckpt_path=last`, `hydra.*` and the overrides shared by every job (the
task name if nothing differs). Per arm: the final numbers of `metrics.json` as mean ± sample std over the
arm's finished jobs (n = number of seeds), parameter counts and throughput; from `metrics.csv`: validation
loss against steps (and tokens for text runs), per-band delta-loss curves (`band/<i>/delta_loss`). For a
gpu_pool sweep, a "GPU pool" section: wall time against the jobs one after another, each GPU's occupancy and
its nvidia-smi utilisation (`gpu_samples.csv`, copied next to the report; `gpu_utilization.png`).

`report.csv` is long-form: one row per (arm, metric) with n, mean, std, min, max, the per-job values and the
number of non-finite (diverged) values left out.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from akira.atomic import atomic_open, atomic_write_bytes
from akira.launch.gpu_monitor import SAMPLES_FILE
from akira.launch.utilization import pool_usage
from akira.runinfo import metrics_csv_files, read_json_dict

# the final numbers shown first (whichever exist), then cost
PRIMARY = ["val/loss", "val/ppl", "test/loss", "test/ppl", "test/word_ppl", "test/ppl_unigram", "val/mse", "test/mse",
           "test/mse_copy_last", "test/mse_linear", "test/skill", "test/psnr", "test/ssim", "test/rollout_mse_h10",
           "test_reference/mse", "test_reference/skill"]
COST = ["params_total", "params_non_embedding", "throughput/tokens_per_sec", "throughput/frames_per_sec",
        "throughput/tokens_per_sec_per_device", "throughput/frames_per_sec_per_device", "throughput/mfu",
        "train_seconds"]
BAND_DELTA = re.compile(r"^band/(\d+)/delta_loss$")


@dataclass
class Job:
    """One job directory of a sweep and what it left behind."""

    dir: Path
    overrides: list[str]
    seed: Any = None
    status: str = "unknown"
    task_name: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    tokens_per_step: float | None = None
    arm: str = ""

    @property
    def finished(self) -> bool:
        return bool(self.metrics)

    def curves(self) -> dict[str, list[tuple[float, float]]]:
        """`{column: [(step, value), ...]}` of the CSV logger's `metrics.csv` (empty if absent)."""
        return read_curves(self.dir / "metrics.csv")


# ------------------------------------------------------------------------------------------ reading
def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def read_curves(csv_path: str | os.PathLike) -> dict[str, list[tuple[float, float]]]:
    """`{column: [(step, value), ...]}` of a CSV log, with the rows of earlier attempts of the run first
    (`metrics.part<k>.csv`, see `runinfo.keep_metrics_csv`)."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for path in metrics_csv_files(csv_path):
        _read_curve_file(path, curves)
    return curves


def _read_curve_file(csv_path, curves: dict) -> None:
    try:
        with open(csv_path, newline="") as f:
            for row in csv.DictReader(f):
                step = row.get("step")
                if step in (None, ""):
                    continue
                for col, value in row.items():
                    if col in ("step", "epoch") or value in (None, ""):
                        continue
                    try:
                        v = float(value)
                    except ValueError:
                        continue
                    if math.isfinite(v):
                        curves.setdefault(col, []).append((float(step), v))
    except OSError:
        pass


def _tokens_per_step(job_dir: Path) -> float | None:
    """Tokens per optimizer step of a text run: batch x seq_len x devices x nodes x accumulation."""
    try:
        from omegaconf import OmegaConf

        cfg = OmegaConf.load(job_dir / ".hydra" / "config.yaml")
        data, trainer = cfg.get("data") or {}, cfg.get("trainer") or {}
        if data.get("kind") != "text" or not data.get("seq_len"):
            return None
        devices = trainer.get("devices", 1)
        world = (devices if isinstance(devices, int) and devices > 0 else 1) * int(trainer.get("num_nodes", 1) or 1)
        return float(data.batch_size * data.seq_len * world * int(trainer.get("accumulate_grad_batches", 1) or 1))
    except Exception:  # noqa: BLE001 - a missing or unusual config just means no token axis
        return None


def find_jobs(sweep_dir: str | os.PathLike) -> list[Job]:
    """Every job directory below `sweep_dir` (sorted by job number, then name)."""
    root = Path(sweep_dir)
    dirs = {p.parent for p in root.rglob("run.json")} | {p.parent.parent for p in root.rglob(".hydra/overrides.yaml")}
    dirs = {d for d in dirs if "wandb" not in d.relative_to(root).parts}
    jobs = []
    for d in dirs:
        run = read_json_dict(d / "run.json") or {}
        overrides = run.get("overrides")
        if overrides is None:
            try:
                from omegaconf import OmegaConf

                overrides = list(OmegaConf.load(d / ".hydra" / "overrides.yaml"))
            except Exception:  # noqa: BLE001
                overrides = []
        metrics = read_json_dict(d / "metrics.json") or {}
        seed = run.get("seed")
        if seed is None:
            seed = next((o.split("=", 1)[1] for o in overrides if _key(o) == "seed"), None)
        jobs.append(Job(dir=d, overrides=[str(o) for o in overrides], seed=seed,
                        status=str(run.get("status", "completed" if metrics else "unknown")),
                        task_name=str(run.get("task_name", "")), metrics=metrics, params=run.get("params") or {},
                        tokens_per_step=_tokens_per_step(d)))

    def order(job: Job):
        m = re.match(r"^(\d+)(?:_|$)", job.dir.name)
        return (int(m.group(1)) if m else math.inf, str(job.dir))

    jobs.sort(key=order)
    assign_arms(jobs)
    return jobs


def assign_arms(jobs: Sequence[Job]) -> None:
    """Arm label = the job's overrides that differ between jobs, minus seed, `ckpt_path=last` (a resume) and
    hydra.* keys; any other `ckpt_path` (another starting point) makes a different arm."""
    def relevant(job: Job) -> dict[str, str]:
        out = {}
        for o in job.overrides:
            k = _key(o)
            v = o.split("=", 1)[1] if "=" in o else ""
            if k == "seed" or (k == "ckpt_path" and v in ("last", "null", "")) or k.startswith(("hydra.", "hydra/")):
                continue
            out[k] = v
        return out

    per_job = [relevant(j) for j in jobs]
    keys = sorted({k for pj in per_job for k in pj})
    varying = [k for k in keys if len({pj.get(k) for pj in per_job}) > 1]
    names = {j.task_name for j in jobs}
    for job, pj in zip(jobs, per_job):
        parts = [(v if k == "experiment" else f"{k}={v}") for k in varying if k in pj for v in [pj[k]]]
        job.arm = ",".join(parts) or (job.task_name if len(names) > 1 else (job.task_name or "all"))


# ------------------------------------------------------------------------------------------ numbers
def _numbers(values: Sequence[float]) -> dict[str, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return {"n": n, "mean": mean, "std": std, "min": min(values), "max": max(values)}


def arms_of(jobs: Sequence[Job]) -> list[str]:
    return list(dict.fromkeys(j.arm for j in jobs))


def _as_number(v: Any) -> float | None:
    """A metric value as a float (metrics.json writes NaN/inf as strings), or None if it is not a number."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and v.strip().lower() in ("nan", "inf", "-inf", "infinity", "-infinity"):
        return float(v)
    return None


def summarize(jobs: Sequence[Job]) -> list[dict[str, Any]]:
    """Long-form rows `{arm, metric, n, mean, std, min, max, values, n_nonfinite}` over each arm's finished
    jobs: the statistics are over the finite values, and `n_nonfinite` counts the jobs whose value was NaN or
    infinite (a diverged seed), shown in the tables beside them."""
    rows = []
    for arm in arms_of(jobs):
        done = [j for j in jobs if j.arm == arm and j.finished]
        keys = list(dict.fromkeys(k for j in done for k, v in j.metrics.items() if _as_number(v) is not None))
        ordered = [k for k in PRIMARY + COST if k in keys] + sorted(k for k in keys if k not in PRIMARY + COST)
        for key in ordered:
            numbers = [x for j in done if (x := _as_number(j.metrics.get(key))) is not None]
            values = [x for x in numbers if math.isfinite(x)]
            bad = len(numbers) - len(values)
            if values:
                rows.append({"arm": arm, "metric": key, **_numbers(values), "values": values, "n_nonfinite": bad})
            elif bad:
                rows.append({"arm": arm, "metric": key, "n": 0, "mean": float("nan"), "std": float("nan"),
                             "min": float("nan"), "max": float("nan"), "values": [], "n_nonfinite": bad})
    return rows


def repeated_seeds(jobs: Sequence[Job]) -> dict[str, list]:
    """Arms in which two finished jobs ran the same seed (so they are not independent seeds): {arm: seeds}."""
    out = {}
    for arm in arms_of(jobs):
        seeds = [str(j.seed) for j in jobs if j.arm == arm and j.finished and j.seed is not None]
        dup = sorted({s for s in seeds if seeds.count(s) > 1})
        if dup:
            out[arm] = dup
    return out


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if abs(x) >= 1000 and float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:.4g}"


def _cell(row: dict | None) -> str:
    if row is None:
        return ""
    text = _fmt(row["mean"]) if row["n"] < 2 else f"{_fmt(row['mean'])} ± {_fmt(row['std'])}"
    bad = row.get("n_nonfinite", 0)
    return f"{text} ({bad} non-finite)" if bad else text


# ------------------------------------------------------------------------------------------ plots
def _figure(width=7.0, height=4.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", bbox_inches="tight")
    return path


def _mean_curve(curves: Sequence[list[tuple[float, float]]]):
    """Mean, min and max over runs at each step (steps any run logged)."""
    by_step: dict[float, list[float]] = {}
    for curve in curves:
        for step, value in curve:
            by_step.setdefault(step, []).append(value)
    steps = sorted(by_step)
    return (steps, [sum(by_step[s]) / len(by_step[s]) for s in steps], [min(by_step[s]) for s in steps],
            [max(by_step[s]) for s in steps])


def plot_curves(jobs: Sequence[Job], key: str, path: Path, x_tokens: bool = False, title: str = "") -> Path | None:
    """`key` against steps (or tokens) per arm: the mean over seeds, shaded between min and max."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    drawn = False
    for arm in arms_of(jobs):
        members = [j for j in jobs if j.arm == arm]
        if x_tokens and any(j.tokens_per_step is None for j in members):
            continue
        curves = []
        for j in members:
            # Lightning logs at step = optimizer steps done - 1: tokens seen = (step + 1) x tokens per step
            curves.append([((s + 1) * j.tokens_per_step if x_tokens else s, v) for s, v in j.curves().get(key, [])])
        steps, mean, lo, hi = _mean_curve([c for c in curves if c])
        if not steps:
            continue
        line, = ax.plot(steps, mean, marker="o" if len(steps) < 12 else None, ms=3, label=f"{arm} (n={len(curves)})")
        if len(members) > 1:
            ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
        drawn = True
    if not drawn:
        return None
    ax.set_xlabel("tokens" if x_tokens else "step")
    ax.set_ylabel(key)
    ax.set_title(title or f"{key} per arm (mean over seeds, min-max shaded)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_band_deltas(jobs: Sequence[Job], path: Path) -> Path | None:
    """Per-band delta-loss curves (`band/<i>/delta_loss`: val loss with band i's output zeroed minus the
    full val loss; mean over seeds), one panel per band arm."""
    panels = []
    for arm in arms_of(jobs):
        members = [j for j in jobs if j.arm == arm]
        all_curves = [j.curves() for j in members]
        bands = sorted({int(m.group(1)) for c in all_curves for k in c for m in [BAND_DELTA.match(k)] if m})
        if bands:
            panels.append((arm, bands, all_curves))
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig = _figure(4.6 * cols, 3.4 * rows)
    for i, (arm, bands, all_curves) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        for b in bands:
            steps, mean, _, _ = _mean_curve([c.get(f"band/{b}/delta_loss", []) for c in all_curves])
            if steps:
                ax.plot(steps, mean, label=f"band {b}", marker="o" if len(steps) < 12 else None, ms=2)
        ax.axhline(0.0, color="k", lw=0.5)
        ax.set_title(arm, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("delta val loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle("per-band delta loss: val loss with band i's output zeroed - full val loss (mean over seeds)")
    return _save(fig, path)


def plot_bars(rows: Sequence[dict], metric: str, path: Path, title: str = "") -> Path | None:
    """A bar per arm: mean ± std of `metric` over seeds."""
    picked = [r for r in rows if r["metric"] == metric]
    if not picked:
        return None
    fig = _figure(max(5.0, 1.1 * len(picked) + 2), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    xs = range(len(picked))
    errs = [0.0 if math.isnan(r["std"]) else r["std"] for r in picked]
    ax.bar(xs, [r["mean"] for r in picked], yerr=errs, capsize=4, color="tab:blue", alpha=0.8)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([f"{r['arm']}\n(n={r['n']})" for r in picked], fontsize=7, rotation=20, ha="right")
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} per arm (mean ± std over seeds)")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_run_curves(run_dir: str | os.PathLike, path: str | os.PathLike) -> Path | None:
    """train/loss and val/loss of one run against steps (the W&B media plot)."""
    curves = read_curves(Path(run_dir) / "metrics.csv")
    keys = [k for k in ("train/loss", "val/loss") if curves.get(k)]
    if not keys:
        return None
    fig = _figure(6.0, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    for key in keys:
        steps, values = zip(*curves[key])
        ax.plot(steps, values, label=key, marker="o" if len(steps) < 12 else None, ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, Path(path))


def plot_gpu_utilization(usage: dict, path: Path) -> Path | None:
    """nvidia-smi utilisation of every pool GPU over the sweep (from `pool_usage`)."""
    by_gpu = {g: rows for g, rows in usage["samples_by_gpu"].items() if rows}
    if not by_gpu:
        return None
    fig = _figure(7.0, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    for gpu, rows in by_gpu.items():
        ax.plot([r["time"] - usage["start"] for r in rows], [r["utilization_gpu"] for r in rows], label=f"GPU {gpu}",
                lw=1.0)
    ax.set_xlabel("seconds since the first job started")
    ax.set_ylabel("utilization (%)")
    ax.set_ylim(-2, 102)
    ax.set_title("GPU utilization during the sweep (nvidia-smi)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def _gpu_pool_lines(usage: dict) -> list[str]:
    """The report's "GPU pool" section: wall time against one-after-another, and each GPU's use."""
    lines = ["", "## GPU pool", "",
             f"{usage['jobs']} job(s) ran in {usage['wall_seconds']:.1f} s of wall time; one after another they "
             f"take {usage['serial_seconds']:.1f} s (the sum of their times): {usage['speedup']:.2f}x.", ""]

    def pct(x):
        return "" if x is None else f"{100 * x:.0f}%"

    body = [[gpu, g["jobs"], f"{g['held_seconds']:.1f}", pct(g["occupancy"]), g["samples"],
             "" if g["mean_utilization"] is None else f"{g['mean_utilization']:.0f}%", pct(g["busy_fraction"]),
             "" if g["max_memory_mib"] is None else f"{g['max_memory_mib']:.0f}"] for gpu, g in usage["gpus"].items()]
    lines += _md_table(["GPU", "jobs", "held s", "held / wall", "samples", "mean util.",
                        f"samples >= {usage['busy_threshold']:.0f}%", "max MiB"], body)
    if not any(usage["samples_by_gpu"].values()):
        lines += ["", "No nvidia-smi samples of the pool's GPUs (`gpu_samples.csv`) were taken during this sweep."]
    return lines


# ------------------------------------------------------------------------------------------ report
def _md_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return out


def _same_as_total(key: str, arms: Sequence[str], by: dict) -> bool:
    """A per-device throughput column that equals the total in every arm (one-device runs) is left out."""
    if not key.endswith("_per_device"):
        return False
    total = key.removesuffix("_per_device")
    return all(by.get((a, key)) is None or by.get((a, total)) is not None
               and math.isclose(by[(a, key)]["mean"], by[(a, total)]["mean"], rel_tol=1e-9) for a in arms)


def write_report(sweep_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Write report.md, report.csv and the plots into `out_dir` (default: the sweep dir); returns paths."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ValueError(f"sweep_dir: {sweep_dir} is not a directory")
    jobs = find_jobs(sweep_dir)
    if not jobs:
        raise ValueError(f"sweep_dir: no job directories (with run.json or .hydra/overrides.yaml) under {sweep_dir}")
    out = Path(out_dir) if out_dir else sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    rows = summarize(jobs)
    paths: dict[str, Path] = {}

    with atomic_open(out / "report.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arm", "metric", "n", "mean", "std", "min", "max", "values", "n_nonfinite"])
        for r in rows:
            writer.writerow([r["arm"], r["metric"], r["n"], repr(r["mean"]), "" if math.isnan(r["std"]) else repr(r["std"]),
                             repr(r["min"]), repr(r["max"]), ";".join(repr(v) for v in r["values"]),
                             r.get("n_nonfinite", 0)])
    paths["csv"] = out / "report.csv"

    plots = {"val_loss": plot_curves(jobs, "val/loss", out / "val_loss_steps.png")}
    if any(j.tokens_per_step for j in jobs):
        plots["val_loss_tokens"] = plot_curves(jobs, "val/loss", out / "val_loss_tokens.png", x_tokens=True)
    plots["band_delta_loss"] = plot_band_deltas(jobs, out / "band_delta_loss.png")
    throughput = next((k for k in ("throughput/tokens_per_sec", "throughput/frames_per_sec")
                       if any(r["metric"] == k for r in rows)), None)
    if throughput:
        plots["throughput"] = plot_bars(rows, throughput, out / "throughput.png")
    headline = next((k for k in ("val/loss", "test/mse") if any(r["metric"] == k for r in rows)), None)
    if headline:
        plots["final"] = plot_bars(rows, headline, out / f"final_{headline.replace('/', '_')}.png")
    paths.update({k: v for k, v in plots.items() if v is not None})

    by = {(r["arm"], r["metric"]): r for r in rows}
    arms = arms_of(jobs)
    present = {r["metric"] for r in rows}
    primary = [k for k in PRIMARY if k in present]
    cost = [k for k in COST if k in present and not _same_as_total(k, arms, by)]
    statuses = {}
    for j in jobs:
        statuses[j.status] = statuses.get(j.status, 0) + 1
    lines = [f"# Sweep report: {sweep_dir.name}", "",
             f"Sweep dir: `{sweep_dir.resolve()}`  ", f"Jobs: {len(jobs)} ("
             + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) + f"), arms: {len(arms)}", "",
             "Values are mean ± sample std over an arm's finished jobs (n = number of seeds); a metric's NaN or "
             "infinite values (diverged seeds) are left out of it and counted beside it.", ""]
    for arm, seeds in repeated_seeds(jobs).items():
        lines += [f"**Warning:** arm `{arm}` has jobs with the same seed ({', '.join(seeds)}): they are not "
                  "independent seeds, and its ± is not a seed spread.", ""]
    lines += ["## Final metrics", ""]
    n_of = {arm: sum(1 for j in jobs if j.arm == arm and j.finished) for arm in arms}
    lines += _md_table(["arm", "n", *primary], [[a, n_of[a], *[_cell(by.get((a, k))) for k in primary]] for a in arms])
    if cost:
        lines += ["", "## Size and cost", ""]
        lines += _md_table(["arm", "n", *cost], [[a, n_of[a], *[_cell(by.get((a, k))) for k in cost]] for a in arms])
    lines += ["", "## Jobs", ""]
    shown = primary[:3]
    lines += _md_table(["job", "arm", "seed", "status", *shown, "params_total"],
                       [[j.dir.name, j.arm, j.seed, j.status,
                         *[_fmt(j.metrics[k]) if isinstance(j.metrics.get(k), (int, float)) else "" for k in shown],
                         j.metrics.get("params_total", j.params.get("total", ""))] for j in jobs])
    usage = pool_usage(sweep_dir)
    if usage is not None:
        lines += _gpu_pool_lines(usage)
        gpu_plot = plot_gpu_utilization(usage, out / "gpu_utilization.png")
        if gpu_plot is not None:
            paths["gpu_utilization"] = gpu_plot
        samples = sweep_dir / SAMPLES_FILE
        if samples.is_file() and out.resolve() != sweep_dir.resolve():
            atomic_write_bytes(out / SAMPLES_FILE, samples.read_bytes())  # the samples travel with the report
    if paths.keys() - {"csv"}:
        lines += ["", "## Plots", ""]
        for key, p in paths.items():
            if key != "csv":
                lines.append(f"![{key}]({os.path.relpath(p, out)})")
    lines += ["", "All metrics of every arm: `report.csv` (long form)."]
    atomic_write_bytes(out / "report.md", ("\n".join(lines) + "\n").encode())
    paths["md"] = out / "report.md"
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m akira.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", help="a multirun directory (e.g. outputs/sweep_ablations/multiruns/<time>)")
    parser.add_argument("--out", default=None, help="where to write the report (default: the sweep dir)")
    args = parser.parse_args(argv)
    try:
        paths = write_report(args.sweep_dir, args.out)
    except ValueError as exc:
        print(f"akira: error: {exc}", file=sys.stderr)
        return 2
    print(f"akira: report written: {paths['md']} ({len(paths) - 2} plots, {paths['csv'].name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
