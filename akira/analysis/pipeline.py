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


def arm_tests(arms: dict) -> dict:
    """Between-arm tests: Fisher's exact test of the total AQ fraction per probe/site and of the universal
    fraction (overlap / random-token candidates) per site."""
    from .stats import fisher_exact

    out: dict = {}
    if not all("alignment" in arms.get(a, {}) for a in ("baseline", "akira")):
        return out
    b, k = arms["baseline"]["alignment"], arms["akira"]["alignment"]
    for probe in ("random", "text"):
        for site in ("mlp", "resid"):
            tb, tk = (b.get(probe, {}).get(site, {}).get("totals"), k.get(probe, {}).get(site, {}).get("totals"))
            if tb and tk:
                out[f"aq_fraction/{probe}/{site}"] = fisher_exact(tk["n_candidates"], tk["n_tested"],
                                                                  tb["n_candidates"], tb["n_tested"])
    for site in ("mlp", "resid"):
        ub, uk = (b.get("universality", {}).get(site, {}).get("totals"), k.get("universality", {}).get(site, {}).get("totals"))
        if ub and uk and ub["n_random"] and uk["n_random"]:
            out[f"universal_fraction/{site}"] = fisher_exact(uk["overlap"], uk["n_random"], ub["overlap"], ub["n_random"])
    return out


def write_markdown(path: Path, table: dict, tests: dict) -> None:
    """compare.md: the headline rows of ``table`` (every row is in compare.json) and the between-arm tests."""
    lines = ["| metric | baseline | akira | akira - baseline |", "|---|---|---|---|"]

    def fmt(v):
        return "—" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))

    for key, row in table.items():
        if any(h.search(key) for h in HEADLINE):
            lines.append(f"| {key} | {fmt(row.get('baseline'))} | {fmt(row.get('akira'))} | {fmt(row.get('difference'))} |")
    if tests:
        lines += ["", "| test (akira vs baseline) | akira | baseline | odds ratio | p (Fisher) |", "|---|---|---|---|---|"]
        for key, t in tests.items():
            lines.append(f"| {key} | {fmt(t.get('fraction_1'))} | {fmt(t.get('fraction_2'))} | "
                         f"{fmt(t.get('odds_ratio'))} | {fmt(t.get('p_value'))} |")
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
