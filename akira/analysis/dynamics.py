"""Training dynamics from a run's `metrics.csv`: per-band stabilisation time and a grokking detector.

Series used (logged by `LanguageModelTask`): ``band/<i>/update_ratio`` (|dW| / |W| of band i's parameter
group), ``band/<i>/delta_loss`` (val loss with band i's MLP output zeroed minus the full val loss),
``train/loss``, ``val/loss``; x axis ``step``.

Stabilisation step of a series (`stabilization_step`): smooth with a centred running mean (``window``
points), take the final level = mean of the smoothed last ``tail_frac`` of the points, and the tolerance
= ``rtol`` x (range of the smoothed series); the stabilisation step is the first step after which every
smoothed value stays within final +- tolerance (None if the last point is outside). The update ratio is
divided by the band's learning rate (``lr/band_<i>``, when logged: a decaying schedule alone must not look
like instability) and analysed on a log10 scale. A band's stabilisation step is the later of its two series'
steps.

Grokking (`detect_grokking`) on a loss-like curve (lower = better): an onset step t with
1. a sharp drop: the smoothed curve falls by at least ``drop_frac`` of its total range (and at least
   ``min_drop``) within ``window_frac`` of the run after t;
2. a plateau before: over the ``plateau_frac`` of the run before t the smoothed curve varies by at most
   ``plateau_tol`` x that drop;
3. training loss already low: by t the (smoothed) training loss has completed at least ``train_done`` of
   its total decrease.
Per band the curve is ``-delta_loss`` (band i's contribution to the validation loss suddenly growing).
"""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np

from akira.runinfo import metrics_csv_files

from .stats import spearman_permutation

BAND_KEY = re.compile(r"^band/(\d+)/(update_ratio|delta_loss)$")


def read_metrics_csv(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{column: (steps, values)} of a Lightning CSVLogger `metrics.csv`, after the rows of the run's earlier
    attempts (`metrics.part<k>.csv`, `runinfo.keep_metrics_csv`); empty cells skipped, sorted by step, repeated
    steps keep the last value."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"run_dir: no metrics.csv at {p}")
    cols: dict[str, dict[float, float]] = {}
    for part in metrics_csv_files(p):
        _read_rows(part, cols)
    out = {}
    for key, d in cols.items():
        steps = np.array(sorted(d), dtype=np.float64)
        out[key] = (steps, np.array([d[s] for s in steps], dtype=np.float64))
    return out


def _read_rows(p: Path, cols: dict) -> None:
    with p.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "step" not in reader.fieldnames:
            raise ValueError(f"run_dir: {p} has no 'step' column (not a Lightning CSVLogger metrics.csv)")
        for row in reader:
            try:
                step = float(row["step"])
            except (TypeError, ValueError):
                continue
            for key, value in row.items():
                if key in ("step", "epoch") or value in (None, ""):
                    continue
                try:
                    cols.setdefault(key, {})[step] = float(value)
                except ValueError:
                    continue


def bands_in(metrics: dict) -> list[int]:
    return sorted({int(m.group(1)) for k in metrics if (m := BAND_KEY.match(k))})


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centred running mean over ``window`` points (shrinking at the edges)."""
    v = np.asarray(values, dtype=np.float64)
    w = max(1, min(int(window), v.size))
    if w == 1:
        return v.copy()
    half = w // 2
    c = np.concatenate([[0.0], np.cumsum(v)])
    i = np.arange(v.size)
    lo, hi = np.clip(i - half, 0, v.size), np.clip(i - half + w, 0, v.size)
    return (c[hi] - c[lo]) / (hi - lo)


def stabilization_step(steps: np.ndarray, values: np.ndarray, rtol: float = 0.1, window: int = 5,
                       tail_frac: float = 0.2, log: bool = False, atol: float = 1e-4) -> dict:
    """See the module doc; the tolerance is max(rtol x range, atol) (atol in the series' units, decades when
    ``log``), so a flat series at round-off level counts as stable. Returns step (None if not stable at the
    end), final, tolerance, run_fraction."""
    s, v = np.asarray(steps, float), np.asarray(values, float)
    keep = np.isfinite(v) & (v > 0 if log else True)
    s, v = s[keep], v[keep]
    if s.size < 3:
        return {"step": None, "final": float("nan"), "tolerance": float("nan"), "run_fraction": None, "points": int(s.size)}
    x = smooth(np.log10(v) if log else v, window)
    n_tail = max(1, int(math.ceil(tail_frac * x.size)))
    final = float(x[-n_tail:].mean())
    tol = max(rtol * float(x.max() - x.min()), atol)
    inside = np.abs(x - final) <= tol + 1e-15
    if not inside[-1]:
        step = None
    else:
        outside = np.nonzero(~inside)[0]
        step = float(s[outside[-1] + 1]) if outside.size else float(s[0])
    frac = None if step is None or s[-1] == s[0] else float((step - s[0]) / (s[-1] - s[0]))
    return {"step": step, "final": final, "tolerance": tol, "run_fraction": frac, "points": int(s.size),
            "log10": bool(log)}


def detect_grokking(steps: np.ndarray, loss: np.ndarray, train_steps: np.ndarray | None = None,
                    train_loss: np.ndarray | None = None, drop_frac: float = 0.5, window_frac: float = 0.15,
                    plateau_frac: float = 0.2, plateau_tol: float = 0.2, train_done: float = 0.8,
                    smooth_window: int = 3, min_drop: float = 1e-3) -> dict:
    """See the module doc; ``min_drop`` is an absolute floor on the drop (nats), so round-off cannot fire it.
    Returns detected, onset_step, steepest_step, drop, drop_fraction (of the range), plateau_range,
    train_progress (at the onset; None without a train curve)."""
    s, v = np.asarray(steps, float), np.asarray(loss, float)
    keep = np.isfinite(v)
    s, v = s[keep], v[keep]
    res = {"detected": False, "onset_step": None, "drop": None, "drop_fraction": None, "plateau_range": None,
           "train_progress": None, "points": int(s.size)}
    if s.size < 5 or s[-1] <= s[0]:
        return res
    x = smooth(v, smooth_window)
    span, rng = s[-1] - s[0], float(x.max() - x.min())
    if rng <= 0:
        return res
    # drop within the window after each point: max over j in (i, i + window] of x[i] - x[j]
    ahead = (s[None, :] > s[:, None]) & (s[None, :] <= s[:, None] + window_frac * span)
    drop = np.where(ahead, x[:, None] - x[None, :], -np.inf).max(1)
    # plateau before each point: range of x over [s_i - plateau, s_i]
    before = (s[None, :] <= s[:, None]) & (s[None, :] >= s[:, None] - plateau_frac * span)
    hi = np.where(before, x[None, :], -np.inf).max(1)
    lo = np.where(before, x[None, :], np.inf).min(1)
    plateau = hi - lo
    long_enough = (s - s[0]) >= plateau_frac * span - 1e-9
    ok = long_enough & (drop >= max(drop_frac * rng, min_drop)) & (plateau <= plateau_tol * np.maximum(drop, 1e-300))
    progress = np.full(s.size, np.nan)
    if train_steps is not None and train_loss is not None and len(train_steps) >= 3:
        ts, tl = np.asarray(train_steps, float), np.asarray(train_loss, float)
        tk = np.isfinite(tl)
        ts, tl = ts[tk], smooth(tl[tk], max(3, tk.sum() // 20))
        total = tl[0] - tl[-min(len(tl), max(1, len(tl) // 10)):].mean()
        at = np.interp(s, ts, tl)
        progress = (tl[0] - at) / total if total > 0 else np.zeros(s.size)
        ok &= progress >= train_done
    if ok.any():
        i = int(np.argmax(np.where(ok, drop, -np.inf)))
        slope = np.diff(x) / np.diff(s)                       # steepest fall inside the onset's window
        seg = np.nonzero(ahead[i][1:] | (np.arange(1, s.size) == i + 1))[0]
        j = seg[np.argmin(slope[seg])] if seg.size else i
        res.update(detected=True, onset_step=float(s[i]), steepest_step=float((s[j] + s[j + 1]) / 2),
                   drop=float(drop[i]), drop_fraction=float(drop[i] / rng), plateau_range=float(plateau[i]),
                   train_progress=None if np.isnan(progress[i]) else float(progress[i]))
    return res


def per_lr(series: tuple[np.ndarray, np.ndarray], lr: tuple[np.ndarray, np.ndarray] | None):
    """update_ratio / learning rate (interpolated at the ratio's steps), so a decaying schedule alone does not
    look like an unstable band; the series unchanged when no LR was logged."""
    if lr is None or len(lr[0]) == 0:
        return series, False
    s, v = series
    at = np.interp(s, lr[0], lr[1])
    ok = at > 0
    return (s[ok], v[ok] / at[ok]), True


def band_dynamics(metrics: dict, bands: list[int] | None = None, rtol: float = 0.1, window: int = 5,
                  tail_frac: float = 0.2, grok: dict | None = None, n_perm: int = 5000, seed: int = 0,
                  atol: float = 1e-4, normalize_by_lr: bool = True) -> dict:
    """Per-band stabilisation and grokking plus the global grokking check on val/loss.

    metrics: `read_metrics_csv` output; bands: subset (default: every band found). ``grok``: keyword
    arguments of `detect_grokking`. ``normalize_by_lr``: analyse update_ratio / lr (``lr/band_<i>``) so the
    schedule's decay is not mistaken for instability. Includes ``low_first``: Spearman correlation of band
    index with stabilisation step (positive = low bands stabilise first) with a permutation p-value.
    """
    found = bands_in(metrics)
    use = found if bands is None else list(bands)
    grok = dict(grok or {})
    train = metrics.get("train/loss")
    tr_s, tr_v = (train if train is not None else (None, None))
    out: dict = {"bands": {}, "bands_found": found}
    if "val/loss" in metrics:
        vs, vv = metrics["val/loss"]
        out["grokking_val_loss"] = detect_grokking(vs, vv, tr_s, tr_v, **grok)
    for b in use:
        entry: dict = {}
        steps_all = []
        ur = metrics.get(f"band/{b}/update_ratio")
        if ur is not None:
            ur, scaled = per_lr(ur, metrics.get(f"lr/band_{b}")) if normalize_by_lr else (ur, False)
            entry["update_ratio"] = stabilization_step(*ur, rtol=rtol, window=window, tail_frac=tail_frac, log=True,
                                                       atol=atol)
            entry["update_ratio"]["per_lr"] = scaled
            steps_all.append(entry["update_ratio"]["step"])
        dl = metrics.get(f"band/{b}/delta_loss")
        if dl is not None:
            entry["delta_loss"] = stabilization_step(*dl, rtol=rtol, window=window, tail_frac=tail_frac, atol=atol)
            steps_all.append(entry["delta_loss"]["step"])
            entry["grokking"] = detect_grokking(dl[0], -dl[1], tr_s, tr_v, **grok)
        entry["stabilization_step"] = (None if not steps_all or any(x is None for x in steps_all)
                                       else max(steps_all))
        out["bands"][str(b)] = entry
    stab = [(b, out["bands"][str(b)]["stabilization_step"]) for b in use]
    stab = [(b, t) for b, t in stab if t is not None]
    if len(stab) >= 3:
        bi, st = np.array([x[0] for x in stab], float), np.array([x[1] for x in stab], float)
        out["low_first"] = spearman_permutation(bi, st, n_perm=n_perm, seed=seed)
    return out
