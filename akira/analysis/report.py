"""Reports: JSON of numbers (NaN -> null), flat metric names, PNG plots, optional W&B logging.

matplotlib is used through its object API only (``Figure`` + Agg canvas), as in `akira.viz`; W&B is
imported only when `logger=wandb` is selected.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from akira.atomic import atomic_open
from akira.runinfo import write_json_atomic


# ------------------------------------------------------------------------------------------ JSON
def to_jsonable(obj: Any) -> Any:
    """numpy scalars/arrays -> Python; NaN/inf -> None; tuples -> lists; dict keys -> str."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    write_json_atomic(path, to_jsonable(obj))
    return Path(path)


def flatten(obj: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict/list as {"a/b/0/c": value} (bools as 0/1; None/strings skipped)."""
    out: dict[str, float] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}/{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)) and not (obj and isinstance(obj[0], str)):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}/{i}" if prefix else str(i)))
    elif isinstance(obj, (bool, np.bool_)):
        out[prefix] = float(obj)
    elif isinstance(obj, (int, float, np.integer, np.floating)):
        if math.isfinite(float(obj)):
            out[prefix] = float(obj)
    return out


# ------------------------------------------------------------------------------------------ plots
def _figure(rows: int, cols: int, size=(4.2, 3.2)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * cols, size[1] * rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def _save(fig, path: str | os.PathLike) -> str:
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=80)
    return str(path)


def line_panel(ax, series: Mapping[str, Mapping[str, Any]], title: str = "", xlabel: str = "",
               ylabel: str = "", logy: bool = False) -> None:
    """series: {label: {"x": [...], "y": [...], optional "lo"/"hi" band, "style": "--", "marker": "o"}}."""
    for label, s in series.items():
        x = np.asarray(s["x"], dtype=float)
        y = np.asarray([np.nan if v is None else v for v in s["y"]], dtype=float)
        if not np.isfinite(y).any():
            continue
        line = ax.plot(x, y, s.get("style", "-"), marker=s.get("marker", "o"), ms=3, label=label)[0]
        if "lo" in s and "hi" in s:
            lo = np.asarray([np.nan if v is None else v for v in s["lo"]], dtype=float)
            hi = np.asarray([np.nan if v is None else v for v in s["hi"]], dtype=float)
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)


def bar_panel(ax, groups: list[str], bars: Mapping[str, list], title: str = "", ylabel: str = "",
              errors: Mapping[str, list] | None = None) -> None:
    """Grouped bars: x = groups, one bar per key of ``bars`` (values may be None)."""
    n = max(1, len(bars))
    width = 0.8 / n
    x = np.arange(len(groups))
    for i, (label, vals) in enumerate(bars.items()):
        v = np.asarray([np.nan if a is None else a for a in vals], dtype=float)
        err = None
        if errors and label in errors:
            err = np.asarray([np.nan if a is None else a for a in errors[label]], dtype=float)
        ax.bar(x + (i - (n - 1) / 2) * width, v, width, label=label, yerr=err, capsize=2)
    ax.set_xticks(x)
    ax.set_xticklabels(groups, fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    if bars:
        ax.legend(fontsize=6)


def heatmap_panel(ax, matrix, title: str = "", xlabel: str = "", ylabel: str = "") -> None:
    m = np.asarray([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    im = ax.imshow(m, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_xticks(range(m.shape[1]))
    ax.set_yticks(range(m.shape[0]))
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)


def panels(path: str | os.PathLike, specs: list[tuple[str, dict]], cols: int = 3) -> str:
    """Draw a grid of panels: specs = [(kind in line|bar|heatmap, kwargs)] -> PNG at ``path``."""
    rows = max(1, math.ceil(len(specs) / cols))
    fig, axes = _figure(rows, min(cols, max(1, len(specs))))
    flat = list(axes.flat)
    draw = {"line": line_panel, "bar": bar_panel, "heatmap": heatmap_panel}
    for ax, (kind, kwargs) in zip(flat, specs):
        draw[kind](ax, **kwargs)
    for ax in flat[len(specs):]:
        ax.set_visible(False)
    return _save(fig, path)


# ------------------------------------------------------------------------------------------ W&B
def check_wandb(enabled: bool) -> None:
    """Fail early (one line) when logger=wandb is selected but wandb is not installed."""
    if not enabled:
        return
    try:
        import wandb  # noqa: F401
    except ImportError as exc:
        raise ValueError("logger.wandb: the wandb package is not installed (pip install wandb), "
                         "or drop logger=wandb") from exc


def log_wandb(settings: Mapping[str, Any] | None, config: Mapping[str, Any], scalars: Mapping[str, float],
              images: Mapping[str, str], tables: Mapping[str, list[list]] | None = None) -> None:
    """One W&B run (job_type analyze): the config, every scalar and the PNGs; offline without an API key."""
    if not settings:
        return
    import wandb

    from akira.loggers import wandb_api_key_available

    offline = settings.get("offline")
    if offline is None:
        offline = os.environ.get("WANDB_MODE", "") in ("offline", "dryrun") or not wandb_api_key_available()
    run = wandb.init(project=settings.get("project", "akira"), entity=settings.get("entity"),
                     group=settings.get("group"), name=settings.get("name"), job_type="analyze",
                     tags=list(settings.get("tags") or []), notes=settings.get("notes"),
                     dir=settings.get("save_dir"), mode="offline" if offline else "online", config=dict(config))
    try:
        payload: dict[str, Any] = dict(scalars)
        payload.update({f"plots/{k}": wandb.Image(v) for k, v in images.items()})
        for name, rows in (tables or {}).items():
            payload[f"tables/{name}"] = wandb.Table(columns=rows[0], data=rows[1:])
        run.log(payload)
    finally:
        run.finish()
