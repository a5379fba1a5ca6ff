"""Activation capture: per layer, the MLP hidden activations (after GELU) and the residual stream after the
block, streamed to disk as `.npy` memmaps of shape `(n_seqs, seq_len, units)` (memory: one batch).

Sites:
- ``mlp``: hidden units of `blocks[l].mlp` (DenseMLP: GELU(fc1 x); SplitDenseMLP: its concatenated groups;
  BandMLP: the per-band hidden units, band 0 first), recomputed from the MLP's input (a forward pre-hook).
- ``resid``: `blocks[l]`'s output (residual stream after attention, MLP and wormhole).

Every unit has a band id: the band MLP's bands / dense_split's groups (``banded: true``); for the dense
baseline the hidden units are split into the same proportional groups as dense_split and the residual stream
into the band-width slices (``banded: false``: pseudo-bands, a control with no architectural meaning).

Store layout (`<dir>/`): ``tokens.npy`` (n_seqs, S) int64, ``<site>_L<l>.npy``, ``meta.json``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from akira.atomic import atomic_write_json
from akira.models.lm import BandMLP, DenseMLP, SplitDenseMLP, Transformer
from akira.models.lm.params import dense_split_sizes

SITES = ("mlp", "resid")


# ------------------------------------------------------------------------------------------ units and bands
def mlp_hidden(mlp: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Hidden activations (..., H) of an LM MLP for its input x (..., D) (eval mode: no dropout)."""
    if isinstance(mlp, DenseMLP):
        return F.gelu(mlp.fc1(x))
    if isinstance(mlp, SplitDenseMLP):
        w1, b1, _, _ = mlp.dense_weights()
        return F.gelu(F.linear(x, w1, b1))
    if isinstance(mlp, BandMLP):
        b1 = torch.cat(list(mlp.b1)) if mlp.b1 is not None else None
        return F.gelu(F.linear(x, torch.block_diag(*mlp.w1), b1))
    raise ValueError(f"model: unsupported MLP type {type(mlp).__name__} (DenseMLP, SplitDenseMLP, BandMLP)")


def has_bands(model: Transformer) -> bool:
    """True when the model's MLP has architectural bands (band or dense_split)."""
    return model.config.mlp in ("band", "dense_split")


def _pseudo_ok(model: Transformer) -> bool:
    cfg = model.config
    return len(cfg.band_widths) >= 2 and sum(cfg.band_widths) == cfg.d_model


def n_bands(model: Transformer) -> int:
    """Bands used for per-band statistics: the model's bands, or pseudo-bands (dense), or 1."""
    return len(model.config.band_widths) if (has_bands(model) or _pseudo_ok(model)) else 1


def unit_bands(model: Transformer, site: str) -> np.ndarray:
    """Band id (int64) of every unit of ``site`` ('mlp': hidden units, 'resid': residual channels)."""
    cfg = model.config
    if site == "resid":
        if not (has_bands(model) or _pseudo_ok(model)):
            return np.zeros(cfg.d_model, dtype=np.int64)
        return np.repeat(np.arange(len(cfg.band_widths)), cfg.band_widths)
    if site != "mlp":
        raise ValueError(f"analysis.sites: unknown site {site!r}; choose from {list(SITES)}")
    if cfg.mlp == "band":
        return np.repeat(np.arange(len(cfg.band_widths)), model.band_hidden)
    if cfg.mlp == "dense_split" or _pseudo_ok(model):
        return np.repeat(np.arange(len(cfg.band_widths)), dense_split_sizes(cfg))
    return np.zeros(cfg.mlp_expansion * cfg.d_model, dtype=np.int64)


def n_units(model: Transformer, site: str) -> int:
    return int(unit_bands(model, site).size)


# ------------------------------------------------------------------------------------------ capture
class _Stop(Exception):
    """Raised by the last hook to skip the rest of the forward pass."""


def _hooks(model: Transformer, sites: list[str], layers: list[int], sink: dict) -> list:
    handles, last = [], max(layers)
    for layer in layers:
        block = model.blocks[layer]
        if "mlp" in sites:
            def pre(module, args, kwargs, layer=layer):
                x, norm = args[0], kwargs.get("norm")   # the band MLP takes the residual stream and its norm
                sink[("mlp", layer)] = mlp_hidden(module, norm(x) if norm is not None else x)
                if layer == last and "resid" not in sites:
                    raise _Stop
            handles.append(block.mlp.register_forward_pre_hook(pre, with_kwargs=True))
        if "resid" in sites:
            def post(module, args, output, layer=layer):
                sink[("resid", layer)] = output[0] if isinstance(output, tuple) else output
                if layer == last:
                    raise _Stop
            handles.append(block.register_forward_hook(post))
    return handles


@torch.no_grad()
def activations(model: Transformer, idx: torch.Tensor, sites: list[str], layers: list[int]) -> dict:
    """{(site, layer): (B, S, U)} for token ids idx (B, S); the forward stops after the last needed layer."""
    sink: dict = {}
    handles = _hooks(model, sites, layers, sink)
    try:
        model(idx)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    return sink


def file_name(site: str, layer: int) -> str:
    return f"{site}_L{layer}.npy"


def capture(model: Transformer, tokens: np.ndarray, out_dir: str | os.PathLike, sites: list[str],
            layers: list[int], batch_size: int = 16, dtype: str = "float16", device: str | torch.device = "cpu",
            meta: dict | None = None) -> ActivationStore:
    """Run ``model`` on ``tokens`` (n_seqs, S) in batches and write every (site, layer) to a memmap.

    Peak memory: one batch of activations. ``meta`` (e.g. checkpoint path, probe) is stored in meta.json;
    a store with ``complete: true`` and the same meta and tokens is reused as is.
    """
    out = Path(out_dir)
    tokens = np.ascontiguousarray(tokens, dtype=np.int64)
    meta = dict(meta or {})
    spec = {"sites": list(sites), "layers": [int(x) for x in layers], "dtype": dtype,
            "n_seqs": int(tokens.shape[0]), "seq_len": int(tokens.shape[1]), **meta}
    existing = ActivationStore.try_open(out)
    if existing is not None and existing.meta.get("spec") == spec and np.array_equal(existing.tokens, tokens):
        return existing
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "meta.json"
    if meta_path.exists():
        meta_path.unlink()
    np.save(out / "tokens.npy", tokens)
    model = model.to(device).eval()
    n, s = tokens.shape
    arrays = {(site, layer): np.lib.format.open_memmap(out / file_name(site, layer), mode="w+", dtype=dtype,
                                                       shape=(n, s, n_units(model, site)))
              for site in sites for layer in layers}
    for start in range(0, n, batch_size):
        idx = torch.from_numpy(tokens[start:start + batch_size]).to(device)
        for key, value in activations(model, idx, sites, layers).items():
            arrays[key][start:start + idx.shape[0]] = value.float().cpu().numpy().astype(dtype)
    for arr in arrays.values():
        arr.flush()
    del arrays
    info = {"spec": spec, "complete": True,
            "units": {site: n_units(model, site) for site in sites},
            "bands": {site: unit_bands(model, site).tolist() for site in sites},
            "banded": has_bands(model), "n_bands": n_bands(model)}
    atomic_write_json(meta_path, info)
    return ActivationStore(out)


class ActivationStore:
    """Read side of a capture directory: memmapped arrays (n_seqs, S, U), tokens and unit bands."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.meta = json.loads((self.path / "meta.json").read_text())
        if not self.meta.get("complete"):
            raise ValueError(f"activations: incomplete capture in {self.path}")
        self.tokens = np.load(self.path / "tokens.npy")

    @classmethod
    def try_open(cls, path: str | os.PathLike) -> ActivationStore | None:
        try:
            return cls(path)
        except (OSError, ValueError, KeyError):
            return None

    @property
    def layers(self) -> list[int]:
        return list(self.meta["spec"]["layers"])

    @property
    def sites(self) -> list[str]:
        return list(self.meta["spec"]["sites"])

    @property
    def n_seqs(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.tokens.shape[1])

    def bands(self, site: str) -> np.ndarray:
        return np.asarray(self.meta["bands"][site], dtype=np.int64)

    def load(self, site: str, layer: int) -> np.ndarray:
        """Read-only memmap (n_seqs, S, U)."""
        if site not in self.sites or layer not in self.layers:
            raise ValueError(f"activations: no {site} layer {layer} in {self.path} (sites {self.sites}, "
                             f"layers {self.layers})")
        return np.load(self.path / file_name(site, layer), mmap_mode="r")


def seq_chunks(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) in chunks of ``size`` sequences, never leaving a last chunk of a single sequence."""
    edges = list(range(start, stop, max(1, size))) + [stop]
    chunks = list(zip(edges[:-1], edges[1:]))
    if len(chunks) > 1 and chunks[-1][1] - chunks[-1][0] == 1:
        chunks[-2:] = [(chunks[-2][0], stop)]
    return chunks
