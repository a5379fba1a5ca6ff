"""PNG figures of each analysis (built from the JSON summaries, so a report can be re-drawn from its JSON)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .report import panels


def _layers(d: dict) -> list[str]:
    """The layer keys ("0", "1", ...) of a per-layer dict (other keys such as "summary" skipped)."""
    return sorted((k for k in d if str(k).isdigit()), key=int)


def _alignment_specs(probe: str, site: str, s: dict) -> list:
    layers = _layers(s["layers"])
    bands = sorted(s["bands"], key=int)
    x = [int(v) for v in layers]
    frac_null = [s["bands"][b]["null_expected"] / max(1, s["bands"][b]["n_tested"]) for b in bands]
    lay = s["layers"]
    return [
        ("bar", dict(groups=[f"b{b}" for b in bands], title=f"{probe}/{site}: AQ fraction per band",
                     ylabel="fraction of units",
                     bars={"observed": [s["bands"][b]["fraction"] for b in bands], "null expected": frac_null})),
        ("line", dict(series={
            "observed": {"x": x, "y": [lay[v]["fraction"] for v in layers]},
            "null expected": {"x": x, "y": [lay[v]["null_expected"] / max(1, lay[v]["n_tested"]) for v in layers],
                              "style": "--"}},
            title=f"{probe}/{site}: AQ fraction per layer", xlabel="layer")),
        ("line", dict(series={
            "CKA (all units)": {"x": x, "y": [lay[v]["cka"] for v in layers]},
            "seq-shuffled null": {"x": x, "y": [lay[v]["cka_null"] for v in layers], "style": "--"},
            **{f"band {b}": {"x": x, "y": [lay[v]["bands"][b]["cka"] for v in layers], "marker": "."} for b in bands}},
            title=f"{probe}/{site}: linear CKA", xlabel="layer")),
        ("line", dict(series={
            "held-out": {"x": x, "y": [lay[v]["procrustes"]["heldout"]["mean_corr"] for v in layers]},
            "in-sample": {"x": x, "y": [lay[v]["procrustes"]["in_sample"]["mean_corr"] for v in layers], "style": ":"},
            "seq-shuffled null": {"x": x, "y": [lay[v]["procrustes"]["null_heldout"]["mean_corr"] for v in layers],
                                  "style": "--"}},
            title=f"{probe}/{site}: Procrustes per-unit corr", xlabel="layer")),
    ]


def alignment_figures(summary: dict, out: Path) -> dict[str, str]:
    """One figure per probe (rows = sites) and one for universality (rows = sites)."""
    images = {}
    for probe, sites in summary.items():
        if probe == "universality":
            continue
        specs = [spec for site, s in sites.items() for spec in _alignment_specs(probe, site, s)]
        images[f"alignment_{probe}"] = panels(out / f"alignment_{probe}.png", specs, cols=4)
    specs = []
    for site, u in summary.get("universality", {}).items():
        layers = _layers(u["layers"])
        bands = sorted(u["bands"], key=int)
        specs += [("bar", dict(groups=[f"L{v}" for v in layers], title=f"universality/{site}: overlap per layer",
                               bars={"observed": [u["layers"][v]["overlap"] for v in layers],
                                     "chance": [u["layers"][v]["expected"] for v in layers]})),
                  ("bar", dict(groups=[f"b{b}" for b in bands], title=f"universality/{site}: overlap per band",
                               bars={"observed": [u["bands"][b]["overlap"] for b in bands],
                                     "chance": [u["bands"][b]["expected"] for b in bands]}))]
    if specs:
        images["universality"] = panels(out / "universality.png", specs, cols=2)
    return images


def centroid_figures(summary: dict, out: Path) -> dict[str, str]:
    """One figure per probe: per site, the mean centroid per band (one line per layer) and AQ vs non-AQ."""
    images = {}
    white = summary.get("white_noise_centroid")
    for probe, sites in summary["probes"].items():
        specs = []
        for site, layers_d in sites.items():
            layers = _layers(layers_d)
            series = {}
            for v in layers:
                bands = sorted(layers_d[v]["bands"], key=int)
                e = layers_d[v]["bands"]
                series[f"L{v}"] = {"x": [int(b) for b in bands], "y": [e[b]["mean"] for b in bands],
                                   "lo": [e[b]["ci"][0] for b in bands], "hi": [e[b]["ci"][1] for b in bands]}
            if white is not None and series:
                xs = next(iter(series.values()))["x"]
                series["white noise"] = {"x": xs, "y": [white] * len(xs), "style": "--", "marker": ""}
            specs.append(("line", dict(series=series, title=f"{probe}/{site}: centroid per band",
                                       xlabel="band", ylabel="cycles / token")))
            aq = [layers_d[v].get("aq_vs_non_aq", {}) for v in layers]
            specs.append(("bar", dict(groups=[f"L{v}" for v in layers], title=f"{probe}/{site}: AQ vs non-AQ",
                                      ylabel="mean centroid", bars={"AQ": [a.get("aq_mean") for a in aq],
                                                                    "non-AQ": [a.get("non_aq_mean") for a in aq]})))
        images[f"centroid_{probe}"] = panels(out / f"centroid_{probe}.png", specs, cols=2)
    return images


def collapse_figures(summary: dict, out: Path) -> dict[str, str]:
    images = {}
    for tag, probes in summary.items():
        for probe, s in probes.items():
            lay = s["layers"]
            x = list(range(len(lay)))

            def ser(key, lay=lay, x=x, **kw):
                return {"x": x, "y": [e[key] for e in lay], "lo": [e[f"{key}_ci"][0] for e in lay],
                        "hi": [e[f"{key}_ci"][1] for e in lay], **kw}

            lens = s["lens"]
            specs = [
                ("line", dict(series={"normalised entropy": ser("entropy_norm")},
                              title=f"{tag}/{probe}: attention entropy (collapse L{s['collapse']['layer']})",
                              xlabel="layer")),
                ("line", dict(series={"R": ser("R"), "R without sink": ser("R_nosink")},
                              title="position-circle coherence", xlabel="layer")),
                ("line", dict(series={"S": ser("sync"), "S chance": ser("sync_chance", style="--"),
                                      "S no sink": ser("sync_nosink"),
                                      "S no sink chance": ser("sync_nosink_chance", style="--")},
                              title="head synchronisation", xlabel="layer")),
                ("line", dict(series={"sink mass": ser("sink"),
                                      "uniform": {"x": x, "y": [s["sink_uniform"]] * len(x), "style": "--", "marker": ""}},
                              title="attention on key 0", xlabel="layer")),
                ("line", dict(series={"entropy": {"x": list(range(len(lens["entropy"]))), "y": lens["entropy"],
                                                  "lo": [c[0] for c in lens["entropy_ci"]],
                                                  "hi": [c[1] for c in lens["entropy_ci"]]},
                                      "KL to output": {"x": list(range(len(lens["entropy"]))), "y": lens["kl_to_final"]}},
                              title="logit lens (0 = embedding)", xlabel="hidden state", ylabel="nats")),
                ("heatmap", dict(matrix=s["per_head"]["entropy_norm"], title="normalised entropy per head",
                                 xlabel="head", ylabel="layer")),
            ]
            images[f"collapse_{tag}_{probe}"] = panels(out / f"collapse_{tag}_{probe}.png", specs, cols=3)
    return images


def dynamics_figures(summary: dict, curves: dict, out: Path, name: str = "dynamics") -> dict[str, str]:
    bands = sorted(summary["bands"], key=int)
    ur = {f"band {b}": {"x": curves[f"band/{b}/update_ratio"][0], "y": curves[f"band/{b}/update_ratio"][1],
                        "marker": ""} for b in bands if f"band/{b}/update_ratio" in curves}
    dl = {f"band {b}": {"x": curves[f"band/{b}/delta_loss"][0], "y": curves[f"band/{b}/delta_loss"][1],
                        "marker": "."} for b in bands if f"band/{b}/delta_loss" in curves}
    losses = {k: {"x": curves[k][0], "y": curves[k][1], "marker": ""} for k in ("train/loss", "val/loss") if k in curves}
    onset = (summary.get("grokking_val_loss") or {}).get("onset_step")
    if onset is not None and "val/loss" in curves:
        v = curves["val/loss"][1]
        losses["grokking onset"] = {"x": [onset, onset], "y": [float(np.min(v)), float(np.max(v))], "style": "--",
                                    "marker": ""}
    stab = [summary["bands"][b].get("stabilization_step") for b in bands]
    specs = [("line", dict(series=ur, title="update / weight ratio", xlabel="step", logy=True)),
             ("line", dict(series=dl, title="delta loss (band ablated)", xlabel="step")),
             ("line", dict(series=losses, title="losses", xlabel="step")),
             ("bar", dict(groups=[f"b{b}" for b in bands], bars={"stabilisation step": stab},
                          title="stabilisation step per band"))]
    return {name: panels(out / f"{name}.png", specs, cols=2)}


def compare_figures(arms: dict, out: Path) -> dict[str, str]:
    """Side-by-side panels of the headline metrics of each arm (missing parts are skipped)."""
    specs = []
    names = list(arms)

    def get(d, *keys):
        for k in keys:
            if not isinstance(d, dict) or k not in d:
                return None
            d = d[k]
        return d

    for probe in ("random", "text"):
        for site in ("mlp", "resid"):
            per = {n: get(arms[n], "alignment", probe, site, "bands") for n in names}
            if all(per.values()):
                bands = sorted(set().union(*[set(p) for p in per.values()]), key=int)
                bars = {n: [get(per[n], b, "fraction") for b in bands] for n in names}
                bars.update({f"{n} null": [None if get(per[n], b, "n_tested") in (None, 0) else
                                           get(per[n], b, "null_expected") / get(per[n], b, "n_tested") for b in bands]
                             for n in names})
                specs.append(("bar", dict(groups=[f"b{b}" for b in bands], bars=bars,
                                          title=f"AQ fraction per band ({probe}/{site})")))
    uni = {n: get(arms[n], "alignment", "universality") for n in names}
    if all(uni.values()):
        sites = sorted(set().union(*[set(u) for u in uni.values()]))
        specs.append(("bar", dict(groups=sites, title="universality: overlap / chance",
                                  bars={n: [get(uni[n], s, "totals", "ratio") for s in sites] for n in names})))
    for probe in ("text", "random"):
        col = {n: get(arms[n], "collapse", "a", probe) for n in names}
        if all(col.values()):
            specs.append(("line", dict(title=f"attention entropy ({probe})", xlabel="layer", series={
                n: {"x": list(range(len(col[n]["layers"]))), "y": [e["entropy_norm"] for e in col[n]["layers"]]}
                for n in names})))
            specs.append(("line", dict(title=f"logit-lens entropy ({probe})", xlabel="hidden state", series={
                n: {"x": list(range(len(col[n]["lens"]["entropy"]))), "y": col[n]["lens"]["entropy"]} for n in names})))
            break
    cen = {n: get(arms[n], "centroid", "probes", "random", "mlp") for n in names}
    if all(cen.values()):
        series = {}
        for n in names:
            layers = _layers(cen[n])
            bands = sorted(cen[n][layers[0]]["bands"], key=int)
            series[n] = {"x": [int(b) for b in bands],
                         "y": [float(np.nanmean([np.nan if cen[n][v]["bands"][b]["mean"] is None else
                                                 cen[n][v]["bands"][b]["mean"] for v in layers])) for b in bands]}
        specs.append(("line", dict(series=series, title="mean centroid per band (random/mlp)", xlabel="band")))
    dyn = {n: get(arms[n], "dynamics", "bands") for n in names}
    if any(dyn.values()):
        bands = sorted(set().union(*[set(d or {}) for d in dyn.values()]), key=int)
        specs.append(("bar", dict(groups=[f"b{b}" for b in bands], title="stabilisation step per band",
                                  bars={n: [get(dyn[n] or {}, b, "stabilization_step") for b in bands] for n in names})))
    if not specs:
        return {}
    return {"compare": panels(out / "compare.png", specs, cols=3)}
