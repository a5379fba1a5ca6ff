"""analyze.py's body: validate the whole request first (one-line errors naming the key), then run the
selected analysis, write `<kind>.json` + PNGs into the run directory and log them to W&B if enabled.

Every analysis is split into a *plan* (reads checkpoint configs and metrics headers, checks layers, bands,
probe sizes, architectures, data; raises ValueError) and a *job* (captures, statistics, reports).
"""
from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from akira.models.lm.params import band_hidden_sizes

from . import plots
from .alignment import min_rotations
from .capture import SITES, ActivationStore, capture, n_bands, n_units
from .centroid import centroid_analysis
from .checkpoint import architecture_mismatch, load_lm, read_lm_config, run_dir_of
from .collapse import collapse_metrics, summarize_collapse
from .dynamics import band_dynamics, bands_in, read_metrics_csv
from .probes import TextSource, data_config_for, describe, random_probe, text_probe
from .report import check_wandb, flatten, log_wandb, write_json
from .seeds import aq_masks, compare_seeds, save_neurons

log = logging.getLogger("akira.analysis")

Job = Callable[[], tuple[dict, dict]]


# ------------------------------------------------------------------------------------------ checks
def check_indices(values, upper: int, key: str, what: str) -> list[int]:
    """Sorted unique ints in [0, upper) or a ValueError naming ``key``."""
    out = sorted({int(v) for v in values})
    bad = [v for v in out if not 0 <= v < upper]
    if bad:
        raise ValueError(f"{key}: {what} {bad} out of range; allowed 0..{upper - 1}")
    return out


def _positive(value, key: str, minimum: float = 1) -> None:
    if value is None or value < minimum:
        raise ValueError(f"{key}: must be >= {minimum}, got {value}")


class Context:
    """The resolved config plus shared services: device, probe tokens, captures, text source."""

    def __init__(self, cfg: dict, out_dir: Path):
        self.cfg, self.out = cfg, out_dir
        self.probe = cfg["probe"]
        self.seed = int(cfg.get("seed", 0))
        dev = cfg.get("device", "cpu")
        if dev not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device: must be cpu, cuda or auto, got {dev!r}")
        if dev == "cuda" and not torch.cuda.is_available():
            raise ValueError("device: cuda requested but no CUDA device is available (use device=cpu or auto)")
        self.device = "cuda" if dev == "auto" and torch.cuda.is_available() else ("cpu" if dev == "auto" else dev)
        self._text: dict[str, TextSource] = {}
        self._high: dict[str, int] = {}
        self.models: dict[str, dict] = {}
        kinds = list(self.probe["kinds"])
        if not kinds:
            raise ValueError("probe.kinds: choose at least one of [random, text]")
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"probe.kinds: repeated entries {kinds}")
        self.kinds = kinds
        _positive(self.probe["n_seqs"], "probe.n_seqs", 2)
        _positive(self.probe["seq_len"], "probe.seq_len", 2)
        _positive(self.probe["batch_size"], "probe.batch_size", 1)
        if self.probe["split"] not in ("train", "valid", "val", "validation", "test"):
            raise ValueError(f"probe.split: must be train, valid (val, validation) or test, got {self.probe['split']!r}")
        self.wandb = (cfg.get("logger") or {}).get("wandb")
        check_wandb(self.wandb is not None)

    # -- inputs -----------------------------------------------------------------------------------------
    def require(self, key: str, value: str | None):
        if not value:
            raise ValueError(f"{key}: required by analysis={self.cfg['analysis']['kind']} (a .ckpt path)")
        return value

    def model_config(self, key: str, path: str, check_probe: bool = True):
        cfg = read_lm_config(path, key)
        shape = _shape_model(cfg)
        self.models[key] = {"path": describe(path), "mlp": cfg.mlp, "wormhole": cfg.wormhole, "n_layer": cfg.n_layer,
                            "d_model": cfg.d_model, "banded": cfg.mlp in ("band", "dense_split"),
                            "n_bands": n_bands(shape), "units": {site: n_units(shape, site) for site in SITES}}
        if check_probe and self.probe["seq_len"] > cfg.max_seq_len:
            raise ValueError(f"probe.seq_len: {self.probe['seq_len']} exceeds {key}'s model.max_seq_len="
                             f"{cfg.max_seq_len}")
        return cfg

    def text_source(self, ckpt: str) -> TextSource | None:
        data = data_config_for(self.cfg.get("data"), ckpt)
        if data is None:
            return None
        key = repr(sorted((k, str(v)) for k, v in data.items()))
        if key not in self._text:
            self._text[key] = TextSource(data, self.probe["split"])
        return self._text[key]

    def check_probes(self, key: str, ckpt: str, vocab: int) -> None:
        """The text source exists and fits the model's vocabulary; random ids are in range."""
        src = None
        if "text" in self.kinds:
            src = self.text_source(ckpt)
            if src is None:
                raise ValueError(f"data: the text probe needs text data: pass data=<option> (e.g. data=wikitext103), "
                                 f"or a {key} inside a training run dir (.hydra/config.yaml), or probe.kinds=[random]")
            if src.vocab_size > vocab:
                raise ValueError(f"data: the tokenizer has {src.vocab_size} ids but {key}'s model has vocab_size={vocab}")
            n, s = self.probe["n_seqs"], self.probe["seq_len"]
            if src.tokens.shape[0] < n * s:
                text_probe(src.tokens, n, s, self.probe["split"])       # raises the one-line error
        high, low = self._random_high(ckpt, vocab), int(self.probe["random_low"])
        if high > vocab:
            raise ValueError(f"probe.random_high: {high} exceeds {key}'s model vocab_size={vocab}")
        if not 0 <= low < high:
            raise ValueError(f"probe.random_low: must be in [0, random_high={high}), got {low}")

    def _random_high(self, ckpt: str, vocab: int) -> int:
        """probe.random_high, else the tokenizer's vocabulary (ids past it are padding rows never trained),
        else the model's vocab_size (with a warning)."""
        if self.probe.get("random_high") is not None:
            return int(self.probe["random_high"])
        if ckpt in self._high:
            return self._high[ckpt]
        try:
            src = self.text_source(ckpt)
        except ValueError:
            src = None
        if src is None:
            log.warning("random probe: tokenizer unknown, drawing ids from the model's vocab_size=%d "
                        "(set probe.random_high to the tokenizer's vocabulary if the table is padded)", vocab)
        self._high[ckpt] = vocab if src is None else int(src.vocab_size)
        return self._high[ckpt]

    def tokens(self, kind: str, ckpt: str, vocab: int) -> np.ndarray:
        n, s = int(self.probe["n_seqs"]), int(self.probe["seq_len"])
        if kind == "random":
            return random_probe(n, s, self._random_high(ckpt, vocab), int(self.probe["random_low"]), self.seed)
        src = self.text_source(ckpt)
        return text_probe(src.tokens, n, s, self.probe["split"])

    # -- work -------------------------------------------------------------------------------------------
    def capture(self, tag: str, ckpt: str, sites: list[str], layers: list[int]) -> dict[str, ActivationStore]:
        model = load_lm(ckpt, tag)
        stores = {}
        for kind in self.kinds:
            toks = self.tokens(kind, ckpt, model.config.vocab_size)
            t0 = time.perf_counter()
            stores[kind] = capture(model, toks, self.out / "activations" / tag / kind, sites, layers,
                                   int(self.probe["batch_size"]), self.probe["dtype"], self.device,
                                   meta={"ckpt": describe(ckpt), "probe": kind, "split": self.probe["split"],
                                         "seed": self.seed})
            log.info("captured %s/%s in %.1fs -> %s", tag, kind, time.perf_counter() - t0, stores[kind].path)
        return stores


# ------------------------------------------------------------------------------------------ plans
def _sites(acfg: dict, key: str) -> list[str]:
    sites = list(dict.fromkeys(acfg.get("sites") or []))
    if not sites:
        raise ValueError(f"{key}.sites: choose at least one of {list(SITES)}")
    return sites


def _alignment_checks(ctx: Context, acfg: dict, key: str, model_cfg, sites, aq: dict, n_layers: int = 1) -> None:
    fdr, k = float(aq["fdr"]), int(aq["n_rotations"])
    if not 0 < fdr < 1:
        raise ValueError(f"{key}.aq.fdr: must be in (0, 1), got {fdr}")
    if k < min_rotations(fdr):
        raise ValueError(f"{key}.aq.n_rotations: {k} rotations cannot reach FDR {fdr} (pooled p-values >= "
                         f"1/(K U + 1)); use >= {min_rotations(fdr)}")
    if k < min_rotations(fdr, n_layers):   # the BH family spans the layers: a few aligned units cannot pass
        log.warning("%s.aq.n_rotations=%d with %d layers in one FDR family: fewer than %d aligned units in a layer "
                    "can never be candidates (p >= 1/(K U + 1) vs BH's fdr r / (L U)); use >= %d to detect a "
                    "single one", key, k, n_layers, math.ceil(n_layers / (fdr * k)), min_rotations(fdr, n_layers))
    if not 0 <= int(aq["null_replicates"]) <= k:
        raise ValueError(f"{key}.aq.null_replicates: must be in [0, n_rotations={k}], got {aq['null_replicates']}")
    h = float(acfg.get("heldout_frac", 0.5))
    if not 0 < h < 1:
        raise ValueError(f"{key}.heldout_frac: must be in (0, 1), got {h}")
    if int(acfg.get("chunk_seqs", 32)) < 2:
        raise ValueError(f"{key}.chunk_seqs: alignment needs >= 2 sequences per chunk (sequence-shuffled null), "
                         f"got {acfg.get('chunk_seqs')}")
    n, s = int(ctx.probe["n_seqs"]), int(ctx.probe["seq_len"])
    n_fit = int(round(n * (1 - h)))
    if n_fit < 2 or n - n_fit < 2:
        raise ValueError(f"probe.n_seqs: {n} sequences leave fewer than 2 on one side of the held-out split "
                         f"(heldout_frac={h}); use >= {int(np.ceil(2 / min(h, 1 - h))) + 1}")
    widest = max(n_units(_shape_model(model_cfg), site) for site in sites)
    per_unit = float(acfg.get("min_rows_per_unit", 2.0))
    if n_fit * s < per_unit * widest:
        need = int(np.ceil(per_unit * widest / s / (1 - h)))
        raise ValueError(f"probe.n_seqs: {n_fit * s} fit rows are fewer than {key}.min_rows_per_unit={per_unit:g} x "
                         f"{widest} units (widest site); use probe.n_seqs >= {need} (or a longer probe.seq_len)")


class _Shape:
    """Just enough of a Transformer for `unit_bands` / `n_units` / `n_bands` (config only, no weights)."""

    def __init__(self, cfg):
        self.config = cfg
        self.band_hidden = band_hidden_sizes(cfg) if cfg.mlp == "band" else None


def _shape_model(cfg) -> Any:
    return _Shape(cfg)


def _layers_bands(acfg: dict, key: str, model_cfg) -> tuple[list[int], list[int] | None]:
    layers = (list(range(model_cfg.n_layer)) if acfg.get("layers") is None else
              check_indices(acfg["layers"], model_cfg.n_layer, f"{key}.layers", "layer"))
    if not layers:
        raise ValueError(f"{key}.layers: empty list; use null for every layer")
    bands = acfg.get("bands")
    if bands is not None:
        bands = check_indices(bands, n_bands(_shape_model(model_cfg)), f"{key}.bands", "band")
    return layers, bands


def plan_alignment(ctx: Context, acfg: dict, key: str, ckpts: dict[str, tuple[str, str | None]],
                   tag: str = "") -> Job:
    """ckpts: {"a": (config key, path), "b": ...}."""
    (ka, pa), (kb, pb) = ckpts["a"], ckpts["b"]
    pa, pb = ctx.require(ka, pa), ctx.require(kb, pb)
    ca, cb = ctx.model_config(ka, pa, check_probe=False), ctx.model_config(kb, pb, check_probe=False)
    diff = architecture_mismatch(ca, cb)
    if diff:
        raise ValueError(f"{kb}: architecture differs from {ka} ({'; '.join(diff[:3])}); seed-vs-seed alignment "
                         "needs two checkpoints of the same architecture")
    ctx.model_config(ka, pa)
    sites = _sites(acfg, key)
    layers, bands = _layers_bands(acfg, key, ca)
    aq = acfg["aq"]
    _alignment_checks(ctx, acfg, key, ca, sites, aq, len(layers))
    ctx.check_probes(ka, pa, ca.vocab_size)
    ctx.check_probes(kb, pb, cb.vocab_size)
    for kind in ctx.kinds:
        if not np.array_equal(ctx.tokens(kind, pa, ca.vocab_size), ctx.tokens(kind, pb, cb.vocab_size)):
            raise ValueError(f"{kb}: its {kind} probe differs from {ka}'s (different data or tokenizer in the two "
                             "run dirs); pass data=<option> and/or probe.random_high explicitly")

    def job() -> tuple[dict, dict]:
        sa = ctx.capture(f"{tag}a", pa, sites, layers)
        sb = ctx.capture(f"{tag}b", pb, sites, layers)
        summary, neurons = compare_seeds(
            sa, sb, sites, layers, bands, float(aq["fdr"]), int(aq["n_rotations"]), bool(aq["abs_corr"]),
            int(aq["null_replicates"]), float(acfg["heldout_frac"]), bool(acfg["standardize"]),
            int(acfg["chunk_seqs"]), ctx.device, ctx.seed)
        save_neurons(ctx.out / f"{tag}alignment_neurons.npz", neurons)
        result = {"alignment": summary, "inputs": {"ckpt_a": describe(pa), "ckpt_b": describe(pb),
                                                   "banded": bool(ca.mlp in ("band", "dense_split")),
                                                   "units": {s: n_units(_shape_model(ca), s) for s in sites}}}
        return result, {"neurons": neurons, "stores_a": sa}
    return job


def plan_centroid(ctx: Context, acfg: dict, key: str, ckpts: dict, tag: str = "",
                  aq_from: Job | None = None) -> Job:
    (ka, pa), (kb, pb) = ckpts["a"], ckpts.get("b", (None, None))
    pa = ctx.require(ka, pa)
    ca = ctx.model_config(ka, pa)
    sites = _sites(acfg, key)
    layers, bands = _layers_bands(acfg, key, ca)
    if ctx.probe["seq_len"] < 8:
        raise ValueError(f"probe.seq_len: the spectral centroid needs >= 8 tokens per sequence, got {ctx.probe['seq_len']}")
    _positive(acfg["n_permutations"], f"{key}.n_permutations", 99)
    _positive(acfg["n_bootstrap"], f"{key}.n_bootstrap", 50)
    nb = n_bands(_shape_model(ca))
    low = check_indices(acfg.get("low_bands") or [], nb, f"{key}.low_bands", "band") if nb > 1 else []
    ctx.check_probes(ka, pa, ca.vocab_size)
    align_job = aq_from
    if align_job is None and pb:
        align_cfg = {"sites": sites, "layers": layers, "bands": bands, "aq": acfg["aq"], "heldout_frac": 0.5,
                     "standardize": True, "min_rows_per_unit": acfg.get("min_rows_per_unit", 2.0),
                     "chunk_seqs": acfg.get("chunk_seqs", 32)}
        align_job = plan_alignment(ctx, align_cfg, key, {"a": (ka, pa), "b": (kb, pb)}, tag)

    def job() -> tuple[dict, dict]:
        extra: dict = {}
        if align_job is not None:
            aligned, extra = align_job()
            stores, masks = extra["stores_a"], aq_masks(extra["neurons"])
        else:
            aligned, stores, masks = None, ctx.capture(f"{tag}a", pa, sites, layers), None
        summary, values = centroid_analysis(stores, sites, layers, bands, masks, low,
                                            int(acfg["n_permutations"]), int(acfg["n_bootstrap"]),
                                            int(acfg.get("chunk_seqs", 32)), ctx.seed, ctx.device)
        np.savez_compressed(ctx.out / f"{tag}centroids.npz",
                            **{f"{p}/{s}/L{layer}": v for (p, s, layer), v in values.items()})
        result = {"centroid": summary, "aq_source": "ckpt_b" if masks is not None else None}
        if aligned is not None:
            result.update(aligned)
        return result, extra
    return job


def plan_collapse(ctx: Context, acfg: dict, key: str, ckpts: dict) -> Job:
    models = {}
    for tag, (k, p) in ckpts.items():
        if tag == "a":
            p = ctx.require(k, p)
        if p:
            c = ctx.model_config(k, p)
            ctx.check_probes(k, p, c.vocab_size)
            models[tag] = (k, p)
    if ctx.probe["seq_len"] < 3:
        raise ValueError(f"probe.seq_len: collapse metrics need >= 3 tokens (rows q >= 2), got {ctx.probe['seq_len']}")
    _positive(acfg["n_draws"], f"{key}.n_draws", 1)
    _positive(acfg["n_bootstrap"], f"{key}.n_bootstrap", 50)
    _positive(acfg["lens_chunk_rows"], f"{key}.lens_chunk_rows", 1)
    batch = int(acfg.get("batch_size") or ctx.probe["batch_size"])

    def job() -> tuple[dict, dict]:
        out: dict = {}
        for tag, (k, p) in models.items():
            model = load_lm(p, k)
            out[tag] = {}
            for kind in ctx.kinds:
                raw = collapse_metrics(model, ctx.tokens(kind, p, model.config.vocab_size), batch, ctx.device,
                                       int(acfg["n_draws"]), int(acfg["lens_chunk_rows"]), ctx.seed)
                out[tag][kind] = summarize_collapse(raw, int(acfg["n_bootstrap"]), ctx.seed)
        return {"collapse": out}, {}
    return job


def _metrics_path(run_dir: str | None, ckpt: str | None, key: str) -> Path:
    if run_dir:
        path = Path(run_dir).expanduser() / "metrics.csv"
    elif ckpt and run_dir_of(ckpt) is not None:
        path = run_dir_of(ckpt) / "metrics.csv"
    elif ckpt and (Path(ckpt).expanduser().resolve().parent.parent / "metrics.csv").is_file():
        path = Path(ckpt).expanduser().resolve().parent.parent / "metrics.csv"
    else:
        raise ValueError(f"{key}: a training run dir with metrics.csv is required by analysis=dynamics")
    if not path.is_file():
        raise ValueError(f"{key}: no metrics.csv in {path.parent}")
    return path


def plan_dynamics(ctx: Context, acfg: dict, key: str, run_key: str, run_dir: str | None,
                  ckpt: str | None = None) -> Job:
    path = _metrics_path(run_dir, ckpt, run_key)
    curves = read_metrics_csv(path)
    found = bands_in(curves)
    bands = acfg.get("bands")
    if bands is not None:
        if not found:
            raise ValueError(f"{key}.bands: {path} has no band/<i>/... columns (a model without bands); use null")
        bad = sorted({int(b) for b in bands} - set(found))
        if bad:
            raise ValueError(f"{key}.bands: band {bad} not logged in {path.name}; logged bands: {found}")
    _positive(acfg["window"], f"{key}.window", 1)
    if not 0 < float(acfg["rtol"]) < 1:
        raise ValueError(f"{key}.rtol: must be in (0, 1), got {acfg['rtol']}")
    if not 0 < float(acfg["tail_frac"]) <= 0.5:
        raise ValueError(f"{key}.tail_frac: must be in (0, 0.5], got {acfg['tail_frac']}")

    def job() -> tuple[dict, dict]:
        res = band_dynamics(curves, bands, float(acfg["rtol"]), int(acfg["window"]), float(acfg["tail_frac"]),
                            dict(acfg["grokking"]), int(acfg["n_permutations"]), ctx.seed, float(acfg["atol"]),
                            bool(acfg["normalize_by_lr"]))
        res["metrics_csv"] = str(path)
        return {"dynamics": res}, {"curves": curves}
    return job


# ------------------------------------------------------------------------------------------ analyses
def _figures(result: dict, extra: dict, out: Path, arm: str = "") -> dict[str, str]:
    """PNGs of every part of ``result`` under <out>/plots[/<arm>]; returns {name: path}."""
    images = {}
    where = out / "plots" / arm if arm else out / "plots"
    if "alignment" in result:
        images.update(plots.alignment_figures(result["alignment"], where))
    if "centroid" in result:
        images.update(plots.centroid_figures(result["centroid"], where))
    if "collapse" in result:
        images.update(plots.collapse_figures(result["collapse"], where))
    if "dynamics" in result:
        images.update(plots.dynamics_figures(result["dynamics"], extra.get("curves", {}), where))
    return {f"{arm}/{k}" if arm else k: v for k, v in images.items()}


def _single(kind: str, ctx: Context) -> Job:
    acfg, top = ctx.cfg["analysis"], ctx.cfg
    ckpts = {"a": ("ckpt_a", top.get("ckpt_a")), "b": ("ckpt_b", top.get("ckpt_b"))}
    if kind == "capture":
        pa = ctx.require("ckpt_a", top.get("ckpt_a"))
        ca = ctx.model_config("ckpt_a", pa)
        sites = _sites(acfg, "analysis")
        layers, _ = _layers_bands(acfg, "analysis", ca)
        models = {"a": pa}
        ctx.check_probes("ckpt_a", pa, ca.vocab_size)
        if top.get("ckpt_b"):
            cb = ctx.model_config("ckpt_b", top["ckpt_b"])
            if max(layers) >= cb.n_layer:
                raise ValueError(f"analysis.layers: layer {max(layers)} out of range for ckpt_b (0..{cb.n_layer - 1})")
            ctx.check_probes("ckpt_b", top["ckpt_b"], cb.vocab_size)
            models["b"] = top["ckpt_b"]

        def job() -> tuple[dict, dict]:
            out = {}
            for tag, path in models.items():
                stores = ctx.capture(tag, path, sites, layers)
                out[tag] = {kind_: {"dir": str(s.path), "n_seqs": s.n_seqs, "seq_len": s.seq_len,
                                    "units": s.meta["units"], "layers": s.layers, "banded": s.meta["banded"],
                                    "activation_std": {f"{site}/L{layer}": float(np.std(s.load(site, layer)[:64].astype(np.float32)))
                                                       for site in sites for layer in layers}}
                            for kind_, s in stores.items()}
            return {"capture": out}, {}
        return job
    if kind == "alignment":
        return plan_alignment(ctx, acfg, "analysis", ckpts)
    if kind == "centroid":
        return plan_centroid(ctx, acfg, "analysis", ckpts)
    if kind == "collapse":
        return plan_collapse(ctx, acfg, "analysis", ckpts)
    if kind == "dynamics":
        return plan_dynamics(ctx, acfg, "analysis", "run_dir", top.get("run_dir"), top.get("ckpt_a"))
    raise ValueError(f"analysis: unknown kind {kind!r}")


def _compare(ctx: Context) -> Job:
    acfg = ctx.cfg["analysis"]
    jobs: dict[str, list[tuple[str, Job]]] = {}
    for arm in ("baseline", "akira"):
        a = acfg[arm]
        key = f"analysis.{arm}"
        ka, kb = f"{key}.ckpt_a", f"{key}.ckpt_b"
        pa = ctx.require(ka, a.get("ckpt_a"))
        arm_jobs = []
        align = None
        if a.get("ckpt_b"):
            align = plan_alignment(ctx, acfg["alignment"], "analysis.alignment", {"a": (ka, pa), "b": (kb, a["ckpt_b"])},
                                   tag=f"{arm}_")
        arm_jobs.append(("centroid", plan_centroid(ctx, acfg["centroid"], "analysis.centroid", {"a": (ka, pa)},
                                                   tag=f"{arm}_", aq_from=align)))
        arm_jobs.append(("collapse", plan_collapse(ctx, acfg["collapse"], "analysis.collapse", {"a": (ka, pa)})))
        try:
            metrics = _metrics_path(a.get("run_dir"), pa, f"{key}.run_dir")
        except ValueError:
            if a.get("run_dir"):
                raise
            metrics = None
        if metrics is not None:
            arm_jobs.append(("dynamics", plan_dynamics(ctx, acfg["dynamics"], "analysis.dynamics", f"{key}.run_dir",
                                                       str(metrics.parent))))
        jobs[arm] = arm_jobs

    def job() -> tuple[dict, dict]:
        arms, extras, images = {}, {}, {}
        for arm, arm_jobs in jobs.items():
            res, ext = {}, {}
            for _, j in arm_jobs:
                r, e = j()
                res.update(r)
                ext.update(e)
            arms[arm], extras[arm] = res, ext
            images.update(_figures(res, ext, ctx.out, arm=arm))
        table = side_by_side(arms)
        tests = arm_tests(arms)
        images.update({f"compare_{k}": v for k, v in plots.compare_figures(arms, ctx.out / "plots").items()})
        write_markdown(ctx.out / "compare.md", table, tests)
        return {"arms": arms, "side_by_side": table, "tests": tests}, {"images": images}
    return job


# ------------------------------------------------------------------------------------------ compare tables
HEADLINE = [re.compile(p) for p in (
    r"^alignment/\w+/\w+/totals/(fraction|null_expected|shuffled_candidates|n_candidates)$",
    r"^alignment/\w+/\w+/bands/\d+/fraction$",
    r"^alignment/\w+/\w+/layers/\d+/(fraction|cka|cka_null)$",
    r"^alignment/\w+/\w+/layers/\d+/procrustes/(heldout|null_heldout)/mean_corr$",
    r"^alignment/universality/\w+/totals/(ratio|p_value|overlap_fraction_of_random)$",
    r"^centroid/probes/\w+/\w+/summary/",
    r"^collapse/a/\w+/collapse/(layer|drop|sequences_agreeing)$",
    r"^collapse/a/\w+/layers/\d+/(entropy_norm|sink|R_nosink|sync_nosink_excess)$",
    r"^collapse/a/\w+/lens/entropy/\d+$",
    r"^dynamics/bands/\d+/(stabilization_step|grokking/detected)$",
    r"^dynamics/(low_first/rho|low_first/p_value|grokking_val_loss/detected)$")]


def side_by_side(arms: dict) -> dict:
    """{metric: {arm: value, ..., "difference": akira - baseline}} over every numeric leaf (no CIs/per-head)."""
    flat = {arm: {k: v for k, v in flatten(res).items() if "_ci/" not in k and "/ci/" not in k
                  and "per_head" not in k and "/per_sequence_counts/" not in k and "/curve/" not in k}
            for arm, res in arms.items()}
    keys = sorted(set().union(*[set(f) for f in flat.values()]))
    out = {}
    for k in keys:
        row = {arm: flat[arm].get(k) for arm in arms}
        if row.get("baseline") is not None and row.get("akira") is not None:
            row["difference"] = row["akira"] - row["baseline"]
        out[k] = row
    return out


POOLED_LABEL = "pooled (neurons as independent trials; anti-conservative)"
REPLICATION = ("one seed pair per arm: p conditions on these trained models (neurons as trials within a layer); "
               "the unit of replication is the training seed, so a claim about the training recipe needs "
               ">= 4 independent seed pairs per arm, compared with the pair as the unit")


def _strata(k_res: dict | None, b_res: dict | None, count: str, total: str) -> dict | None:
    """Per-layer 2x2 tables [[akira count, akira rest], [baseline count, baseline rest]] of one probe/site, or
    None when either arm lacks the totals. Strata = the layer indices present in both arms (a layer in one
    arm only has an empty row: no information on the arm contrast); without per-layer counts the totals are
    one stratum (flagged by ``stratified`` False)."""
    tk, tb = (k_res or {}).get("totals"), (b_res or {}).get("totals")
    if not tk or not tb:
        return None
    lk, lb = (k_res or {}).get("layers") or {}, (b_res or {}).get("layers") or {}
    pooled = [int(tk[count]), int(tk[total]), int(tb[count]), int(tb[total])]
    if not lk or not lb:
        return {"tables": [[[pooled[0], pooled[1] - pooled[0]], [pooled[2], pooled[3] - pooled[2]]]],
                "layers": [], "unmatched": [], "pooled": pooled, "stratified": False}
    both = sorted(set(lk) & set(lb), key=int)
    tables = [[[int(lk[m][count]), int(lk[m][total]) - int(lk[m][count])],
               [int(lb[m][count]), int(lb[m][total]) - int(lb[m][count])]] for m in both]
    return {"tables": tables, "layers": both, "unmatched": sorted(set(lk) ^ set(lb), key=int), "pooled": pooled,
            "stratified": True}


def _stratified_test(st: dict) -> dict:
    from .stats import cmh_test, fisher_exact

    k1, n1, k2, n2 = st["pooled"]
    fisher = fisher_exact(k1, n1, k2, n2)
    cmh = cmh_test(st["tables"]) if st["tables"] else cmh_test(np.zeros((0, 2, 2)))
    return {"test": "Cochran-Mantel-Haenszel, strata = layers" if st["stratified"]
            else "Cochran-Mantel-Haenszel, one stratum (no per-layer counts)",
            # pooled fractions: descriptive only
            "fraction_1": k1 / n1 if n1 else float("nan"), "fraction_2": k2 / n2 if n2 else float("nan"),
            "counts": {"akira": [k1, n1], "baseline": [k2, n2]},
            "odds_ratio": cmh["odds_ratio"], "odds_ratio_ci": cmh["odds_ratio_ci"], "ci_level": cmh["ci_level"],
            "statistic": cmh["statistic"], "p_value": cmh["p_value"],
            "breslow_day_statistic": cmh["breslow_day_statistic"],
            "breslow_day_p_value": cmh["breslow_day_p_value"], "breslow_day_df": cmh["breslow_day_df"],
            # strata: the layers of both arms (their counts: arms/<arm>/alignment/.../layers/<l>); n_strata: those
            # with every margin > 0
            "n_strata": cmh["n_strata"], "layers": [int(m) for m in st["layers"]],
            "unmatched_layers": [int(m) for m in st["unmatched"]],
            "pooled_fisher": {"label": POOLED_LABEL, "odds_ratio": fisher["odds_ratio"],
                              "p_value": fisher["p_value"]},
            "replication": REPLICATION}


def arm_tests(arms: dict) -> dict:
    """Between-arm tests (akira vs baseline) of the AQ fraction per probe/site (candidates of tested units)
    and of the universal fraction per site (random-probe candidates that are also text-probe candidates).

    The main test is stratified by layer: the Cochran-Mantel-Haenszel test over the per-layer 2x2 tables
    (arm x candidate or not; `stats.cmh_test`), with the Mantel-Haenszel common odds ratio (> 1: more in
    akira), its Robins-Breslow-Greenland CI, and the Breslow-Day p that the layers share that odds ratio.
    Layers have different base rates and the arms can spread their units differently over them, so pooling
    all layers' units into one table confounds the arm with the layer (up to a reversed direction: Simpson's
    paradox); the pooled Fisher test is kept under ``pooled_fisher``, labelled `POOLED_LABEL`, for reference.
    ``fraction_1``/``fraction_2`` (akira/baseline) are the pooled fractions, descriptive only.

    Unit of replication: the training seed. Each arm is one pair of seeds (ckpt_a, ckpt_b; the AQ status of a
    unit is a property of that pair), and both tests treat the units of a layer as independent trials given
    these trained models: they say nothing about seed-to-seed variation, and a small p is not evidence about
    the training recipe. That needs several independent seed pairs per arm (disjoint pairs: pairs sharing a
    seed are dependent), one alignment each, and a test with the pair as the unit, e.g. a permutation test of
    the arm labels over pairs of each pair's layer-stratified log odds (>= 4 pairs per arm for a two-sided
    p < 0.05 to be reachable: 2 / C(8, 4) = 0.029), or a binomial mixed model with a random effect per pair.
    """
    out: dict = {}
    if not all("alignment" in arms.get(a, {}) for a in ("baseline", "akira")):
        return out
    b, k = arms["baseline"]["alignment"], arms["akira"]["alignment"]
    for probe in ("random", "text"):
        for site in ("mlp", "resid"):
            st = _strata(k.get(probe, {}).get(site), b.get(probe, {}).get(site), "n_candidates", "n_tested")
            if st is not None:
                out[f"aq_fraction/{probe}/{site}"] = _stratified_test(st)
    for site in ("mlp", "resid"):
        # universality layers: n_a = random-probe candidates (among units tested on both probes), overlap =
        # those that are text-probe candidates too; totals: n_random = sum n_a
        uk, ub = k.get("universality", {}).get(site), b.get("universality", {}).get(site)
        if not uk or not ub or not uk.get("totals", {}).get("n_random") or not ub.get("totals", {}).get("n_random"):
            continue
        st = _strata(*({"totals": u["totals"], "layers": {m: {"overlap": e["overlap"], "n_random": e["n_a"]}
                                                          for m, e in (u.get("layers") or {}).items()}}
                       for u in (uk, ub)), "overlap", "n_random")
        out[f"universal_fraction/{site}"] = _stratified_test(st)
    return out


def write_markdown(path: Path, table: dict, tests: dict) -> None:
    """compare.md: the headline rows of ``table`` (every row is in compare.json) and the between-arm tests
    (`arm_tests`: stratified by layer, with the pooled Fisher p beside it, and the caveat on replication)."""
    lines = ["| metric | baseline | akira | akira - baseline |", "|---|---|---|---|"]

    def fmt(v):
        return "—" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))

    def ci(t):
        lo, hi = (t.get("odds_ratio_ci") or [None, None])[:2]
        ok = all(isinstance(x, float) and math.isfinite(x) for x in (lo, hi))
        return f"{fmt(t.get('odds_ratio'))} [{fmt(lo)}, {fmt(hi)}]" if ok else f"{fmt(t.get('odds_ratio'))} [—]"

    for key, row in table.items():
        if any(h.search(key) for h in HEADLINE):
            lines.append(f"| {key} | {fmt(row.get('baseline'))} | {fmt(row.get('akira'))} | {fmt(row.get('difference'))} |")
    if tests:
        lines += ["", "| test (akira vs baseline) | akira | baseline | common odds ratio [95% CI] | p (CMH) | "
                  "p pooled Fisher | p homogeneity (Breslow-Day) |", "|---|---|---|---|---|---|---|"]
        for key, t in tests.items():
            pooled = (t.get("pooled_fisher") or {}).get("p_value")
            if t.get("n_strata", 1) == 0:   # no layer with an event and a non-event in both arms together
                odds, p_cmh, p_bd = "—", "— (no informative layer)", "—"
            else:
                odds, p_cmh, p_bd = ci(t), fmt(t.get("p_value")), fmt(t.get("breslow_day_p_value"))
            lines.append(f"| {key} | {fmt(t.get('fraction_1'))} | {fmt(t.get('fraction_2'))} | {odds} | {p_cmh} | "
                         f"{fmt(pooled)} | {p_bd} |")
        lines += ["", "akira, baseline: fractions pooled over layers (descriptive). Test stratified by layer: "
                  "Cochran-Mantel-Haenszel (continuity-corrected, two-sided) over the per-layer 2x2 tables, "
                  "Mantel-Haenszel common odds ratio (> 1: more in akira) with the Robins-Breslow-Greenland CI; "
                  "a small Breslow-Day p: the layers' odds ratios differ, read the per-layer fractions. "
                  f"p pooled Fisher: {POOLED_LABEL}; layers differ in base rate, so pooling confounds arm with "
                  "layer. Unit of replication: the training seed. Each arm is one pair of seeds, so these "
                  "p-values treat the units of a layer as independent trials given these trained models and "
                  "say nothing about seed-to-seed variation; a claim about the training recipe needs several "
                  "independent seed pairs per arm (>= 4 for a two-sided permutation test over pairs to reach "
                  "p < 0.05)."]
    path.write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------ entry
PRINTED = ("totals/fraction", "totals/null_expected", "totals/shuffled_candidates", "totals/ratio", "totals/p_value", "summary/trend_mean",
           "summary/aq_vs_non_aq_mean", "collapse/layer", "stabilization_step", "low_first/rho",
           "grokking_val_loss/detected", "grokking/detected")


def headline(result: dict) -> dict[str, float]:
    """The numbers printed at the end of a run (everything is in the JSON)."""
    flat = flatten({k: v for k, v in result.items() if k not in ("side_by_side", "models", "probe")})
    return {k: v for k, v in flat.items() if k.endswith(PRINTED)}


def plan(cfg: dict, out_dir: Path) -> tuple[Context, str, Job]:
    """Validate the request (ValueError naming the key) and return the job to run; nothing heavy runs here."""
    kind = (cfg.get("analysis") or {}).get("kind")
    if kind is None:
        raise ValueError("analysis: choose an analysis (capture, alignment, centroid, collapse, dynamics, compare)")
    ctx = Context(cfg, out_dir)
    return ctx, kind, (_compare(ctx) if kind == "compare" else _single(kind, ctx))


def run_analysis(cfg: dict, out_dir: Path) -> dict:
    """Plan, run, write `<kind>.json` and plots into ``out_dir``, log to W&B (plain-dict config)."""
    return execute(*plan(cfg, out_dir))


def analyze(cfg) -> dict:
    """analyze.py's function: the composed Hydra config -> report in Hydra's run dir. A failed check is a
    `ConfigError` (exit code 2, one line) raised before any capture or statistics."""
    from omegaconf import OmegaConf

    from akira.config import ConfigError

    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    out = Path(container["paths"]["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    try:
        planned = plan(container, out)
    except ValueError as exc:
        raise ConfigError(None, str(exc)) from exc
    return execute(*planned)


def execute(ctx: Context, kind: str, job: Job) -> dict:
    t0 = time.perf_counter()
    result, extra = job()
    result["seconds"] = time.perf_counter() - t0
    result["probe"] = {**ctx.probe, "random_high": sorted(set(ctx._high.values())) or None}
    result["models"] = ctx.models
    images = extra.get("images") if kind == "compare" else _figures(result, extra, ctx.out)
    result["plots"] = sorted(images.values())
    write_json(ctx.out / f"{kind}.json", result)
    for k, v in headline(result).items():
        print(f"{k:<64} {v:.4g}")
    print(f"akira: {kind} report -> {ctx.out / (kind + '.json')}")
    log_wandb(ctx.wandb, ctx.cfg, flatten({k: v for k, v in result.items() if k != "side_by_side"}), images)
    return result
