"""The spectral 2D next-frame predictor: FFT bands -> temporal, neighbor and wormhole attention -> head.

REFERENCE §1 rebuilt batched, vectorised and causal. At every query frame ``t``:

1. bands (:class:`BandDecomposition`) of every frame, per-band features ``f = W p + c`` of ``k x k`` band
   patches (:class:`BandEmbedding`; attention runs exactly in patch space, see :class:`QKVO`);
2. temporal attention of each pixel over its last ``T`` frames (``t - T + 1 .. t``);
3. neighbor attention over the 3x3 neighbourhood in frames ``t - L .. t``;
4. wormhole attention to similar pixels of frames ``t - T + 1 .. t - k_min``;
5. ``concat -> Linear(n*D -> A) -> ReLU -> Linear(A -> A)`` fusion and ``Linear(A -> D) -> ReLU ->
   Linear(D -> 1)`` head (consecutive linear maps are folded when computed, see :meth:`_head`).
   ``residual=True`` (default): the head predicts a change and the output is
   ``clamp(x_t + delta, 0, 1)`` with a straight-through gradient (the last layer starts near zero, so the
   untrained model is close to copy-last); ``residual=False``: ``sigmoid(head)`` as the reference.

Frames are ``(B, T, H, W)`` in [0, 1], oldest first. Unlike the reference, keys include the current frame
(its values are the freshest information) and the history is recomputed from raw frames with the current
weights (no stale detached features, no noisy seeding).

History padding: a query frame ``t < T - 1`` has fewer than ``T`` frames of history; the missing frames are
copies of the first frame (``x_0``). ``forward`` (a window), ``forward_sequence`` (whole clips in parallel)
and ``step`` (streaming, ring buffer) all use this rule, so they agree:
``forward_sequence(x)[:, t] == forward(x[:, :t+1]) == t-th output of step`` (within float rounding).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from akira.models.fields.baselines import NextFrameModel, check_frames, clamp01_straight_through
from akira.models.fields.spectral.bands import BandDecomposition, band_names, check_band, check_octave_bands
from akira.models.fields.spectral.features import BandEmbedding, patches
from akira.models.fields.spectral.neighbor import NeighborAttention
from akira.models.fields.spectral.temporal import TemporalAttention
from akira.models.fields.spectral.wormhole import WormholeAttention, pooled_grid

__all__ = ["DEFAULT_WORMHOLE_THRESHOLD", "Spectral2DPredictor"]

DEFAULT_WORMHOLE_THRESHOLD = 0.8


def _int(key: str, value: object, lo: int, hi: int | None = None, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        rng = f"{lo} <= value" + (f" <= {hi}" if hi is not None else "")
        raise ValueError(f"model.{key}={value!r} is out of range; allowed: integer {rng}{hint}")
    return value


def _choice(key: str, value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"model.{key}={value!r} is not allowed; allowed: {', '.join(allowed)}")
    return str(value)


def _float(key: str, value: object, lo: float, hi: float, lo_open: bool = False) -> float:
    v = float(value)  # type: ignore[arg-type]
    if not (lo < v if lo_open else lo <= v) or v > hi:
        raise ValueError(
            f"model.{key}={value!r} is out of range; allowed: {lo} {'<' if lo_open else '<='} value <= {hi}"
        )
    return v


class Spectral2DPredictor(NextFrameModel):
    """Spectral band attention next-frame predictor; see the module docstring.

    Interface: ``forward(frames (B, T, H, W)) -> (B, H, W)``; ``forward_sequence(frames (B, S, H, W)) ->
    (B, S, H, W)`` (output ``t`` predicts frame ``t + 1`` from frames ``<= t``); streaming
    ``init_state(batch, H, W)`` / ``step(frame (B, H, W), state) -> (pred (B, H, W), state)``.
    ``last_stats`` (0-dim detached tensors) is filled on every call: ``temporal_entropy``,
    ``neighbor_entropy`` (mean entropy of the attention weights at the last query frame),
    ``wormhole_links`` and ``wormhole_positions_with_links`` (per query frame), ``wormhole_link_rate``
    (links / (queries * top_k)), ``wormhole_mean_similarity`` (over links; NaN without links) and
    ``band_energy/<band>`` (mean square of each computed band before normalisation); keys only for the
    enabled attentions. With ``return_maps=True``, ``last_maps`` holds ``temporal_weights (B, H, W, T)``
    (oldest first) and ``wormhole_link_counts (B, H, W)`` of the last query frame.

    Args (the config keys ``model.<name>``):
        dim, attn_dim: feature size ``D`` and attention size ``A`` (reference baseDim, attnDim).
        time_depth: ``T``, frames attended by the temporal attention (current frame included);
            ``context_frames = T``.
        temporal_top_k: keys kept per pixel, ``1 <= K <= T``; decay_rate: ``gamma`` of the recency prior.
        selection: ``"topk"`` or ``"softmax"``; recency: prior ``"after"`` (reference) or ``"before"`` top-K.
        layer_range: ``L``; neighbor attention reads ``L + 1 <= T`` frames. neighbor_norm: ``"joint"`` or
            ``"per_frame"`` (reference).
        use_temporal, use_neighbor, use_wormhole: switch each attention type (at least one on).
        temporal_band, neighbor_band, wormhole_sim_band, wormhole_value_band: band routing, each one of
            ``intensity, low, high, band_0 .. band_{n_bands-1}`` (reference: intensity, intensity, low,
            intensity).
        n_bands: radial octave bands (0: none); freq_cutoff, freq_sharpness: soft low/high mask;
            band_normalize: per-frame min-max of spectral bands; feature_kernel: odd conv size of the
            per-band projection (1 = the reference's Linear(1 -> D)).
        wormhole_top_k: max links per query (reference max_connections); wormhole_threshold: min similarity
            of a link in [-1, 1]; default 0.8: with the untrained model about half of the pixels of the
            reference's ``blob`` (its non-flat part) and all of ``interference`` get links (the reference's
            0.9995 is one override away; it was meaningless there because its features were untrained); wormhole_min_temporal_distance: nearest eligible past frame
            ``t - k`` with ``k >= this`` (>= 1); wormhole_include_prev: whether ``t - 1`` is eligible
            (the reference: no, it has ``k >= 2``); wormhole_read_next: read values from the frame after the
            link; wormhole_sim_dim, wormhole_learned_weight: learned part of the similarity descriptor;
            wormhole_chunk_size: max (query, candidate) similarity entries per chunk (a memory bound,
            4 bytes each; default 2^26 = 256 MiB); wormhole_max_key_tokens: key tokens per
            past frame before pooling.
        wormhole_skip_steps: must be 1. The reference reused a stale, detached wormhole output on skipped
            steps (no gradient, REFERENCE §1.6); we compute the wormhole at every step.
        residual: predict ``x_t + delta`` (default) or ``sigmoid`` (reference).
        grid: optional expected grid side, validated at build (octave bands, pooling); any grid works later.
        return_maps: fill ``last_maps``.
        time_block: query frames per block in the windowed attentions (memory/speed trade-off only;
            default: the window length on GPUs, ``window.CPU_BLOCK`` on CPUs).
    """

    is_trainable = True
    windowed_sequence = True  # forward_sequence's output t reads frames t - T + 1 .. t only, as forward does

    def __init__(
        self,
        dim: int = 32,
        attn_dim: int = 32,
        time_depth: int = 8,
        temporal_top_k: int = 4,
        decay_rate: float = 0.95,
        layer_range: int = 3,
        selection: str = "topk",
        recency: str = "after",
        neighbor_norm: str = "joint",
        use_temporal: bool = True,
        use_neighbor: bool = True,
        use_wormhole: bool = True,
        temporal_band: str = "intensity",
        neighbor_band: str = "intensity",
        wormhole_sim_band: str = "low",
        wormhole_value_band: str = "intensity",
        n_bands: int = 0,
        freq_cutoff: float = 0.25,
        freq_sharpness: float = 10.0,
        band_normalize: bool = True,
        feature_kernel: int = 3,
        wormhole_top_k: int = 4,
        wormhole_threshold: float = DEFAULT_WORMHOLE_THRESHOLD,
        wormhole_min_temporal_distance: int = 1,
        wormhole_include_prev: bool = True,
        wormhole_read_next: bool = False,
        wormhole_sim_dim: int = 8,
        wormhole_learned_weight: float = 0.5,
        wormhole_chunk_size: int = 2**26,
        wormhole_max_key_tokens: int = 1024,
        wormhole_skip_steps: int = 1,
        residual: bool = True,
        grid: int | None = None,
        return_maps: bool = False,
        time_block: int | None = None,
    ):
        super().__init__()
        # ---- validation: one line naming the key and the allowed range
        dim = _int("dim", dim, 1)
        attn_dim = _int("attn_dim", attn_dim, 1)
        t = _int("time_depth", time_depth, 1)
        n_bands = _int("n_bands", n_bands, 0)
        use_temporal, use_neighbor, use_wormhole = bool(use_temporal), bool(use_neighbor), bool(use_wormhole)
        if not (use_temporal or use_neighbor or use_wormhole):
            raise ValueError(
                "model.use_temporal, model.use_neighbor, model.use_wormhole: at least one must be true"
            )
        temporal_top_k = _int("temporal_top_k", temporal_top_k, 1, t, f" (model.time_depth={t})")
        decay_rate = _float("decay_rate", decay_rate, 0.0, 1.0, lo_open=True)
        layer_range = _int(
            "layer_range", layer_range, 0, t - 1, f" (layer_range + 1 frames <= model.time_depth={t})"
        )
        selection = _choice("selection", selection, ("topk", "softmax"))
        recency = _choice("recency", recency, ("after", "before"))
        neighbor_norm = _choice("neighbor_norm", neighbor_norm, ("joint", "per_frame"))
        bands = {
            "temporal_band": check_band("model.temporal_band", temporal_band, n_bands),
            "neighbor_band": check_band("model.neighbor_band", neighbor_band, n_bands),
            "wormhole_sim_band": check_band("model.wormhole_sim_band", wormhole_sim_band, n_bands),
            "wormhole_value_band": check_band("model.wormhole_value_band", wormhole_value_band, n_bands),
        }
        freq_cutoff = _float("freq_cutoff", freq_cutoff, 0.0, math.inf, lo_open=True)
        freq_sharpness = _float("freq_sharpness", freq_sharpness, 0.0, math.inf, lo_open=True)
        feature_kernel = _int("feature_kernel", feature_kernel, 1)
        if feature_kernel % 2 == 0:
            raise ValueError(f"model.feature_kernel={feature_kernel} must be odd; allowed: 1, 3, 5, ...")
        wormhole_top_k = _int("wormhole_top_k", wormhole_top_k, 1)
        wormhole_threshold = _float("wormhole_threshold", wormhole_threshold, -1.0, 1.0)
        wormhole_min_temporal_distance = _int(
            "wormhole_min_temporal_distance", wormhole_min_temporal_distance, 1
        )
        k_min = max(wormhole_min_temporal_distance, 1 if wormhole_include_prev else 2)
        if use_wormhole and k_min > t - 1:
            raise ValueError(
                f"model.time_depth={t} leaves no eligible wormhole frame (nearest eligible is t-{k_min} from "
                f"model.wormhole_min_temporal_distance / model.wormhole_include_prev); allowed: time_depth >= {k_min + 1}"
            )
        wormhole_sim_dim = _int("wormhole_sim_dim", wormhole_sim_dim, 1)
        wormhole_learned_weight = _float("wormhole_learned_weight", wormhole_learned_weight, 0.0, 1.0)
        wormhole_chunk_size = _int("wormhole_chunk_size", wormhole_chunk_size, 1)
        wormhole_max_key_tokens = _int("wormhole_max_key_tokens", wormhole_max_key_tokens, 1)
        if wormhole_skip_steps != 1:
            raise ValueError(
                f"model.wormhole_skip_steps={wormhole_skip_steps!r} is not supported; allowed: 1 (the reference's "
                "skipping reused a stale, detached output; the wormhole runs every step)"
            )
        if time_block is not None:
            time_block = _int("time_block", time_block, 1)
        if grid is not None:
            grid = _int("grid", grid, 2)
            check_octave_bands(n_bands, grid, grid)

        self.dim, self.attn_dim, self.time_depth, self.context_frames = dim, attn_dim, t, t
        self.layer_range, self.time_block = layer_range, time_block
        self.use_temporal, self.use_neighbor, self.use_wormhole = use_temporal, use_neighbor, use_wormhole
        self.residual, self.return_maps, self.grid = bool(residual), bool(return_maps), grid
        self.n_bands = n_bands
        self.temporal_band = bands["temporal_band"]
        self.neighbor_band = bands["neighbor_band"]
        self.wormhole_sim_band = bands["wormhole_sim_band"]
        self.wormhole_value_band = bands["wormhole_value_band"]
        self.wormhole_k_min = k_min

        # ---- which bands need features / scalars (unused bands are neither computed nor projected)
        feat_bands: list[str] = []
        if use_temporal:
            feat_bands.append(self.temporal_band)
        if use_neighbor:
            feat_bands.append(self.neighbor_band)
        if use_wormhole:
            feat_bands.append(self.wormhole_value_band)
            if wormhole_learned_weight > 0:
                feat_bands.append(self.wormhole_sim_band)
        self.feat_bands = tuple(n for n in band_names(n_bands) if n in feat_bands)
        scal = set(self.feat_bands) | ({self.wormhole_sim_band} if use_wormhole else set())
        self.band_list = tuple(n for n in band_names(n_bands) if n in scal)
        self.bands = BandDecomposition(self.band_list, n_bands, freq_cutoff, freq_sharpness, band_normalize)
        self.register_buffer(
            "_feat_idx", torch.tensor([self.band_list.index(n) for n in self.feat_bands]), persistent=False
        )
        self.embed = BandEmbedding(len(self.feat_bands), dim, feature_kernel)
        self.feature_kernel = feature_kernel

        self.temporal = (
            TemporalAttention(dim, attn_dim, t, temporal_top_k, decay_rate, selection, recency, time_block)
            if use_temporal
            else None
        )
        self.neighbor = (
            NeighborAttention(dim, attn_dim, layer_range, neighbor_norm, time_block) if use_neighbor else None
        )
        self.wormhole = (
            WormholeAttention(
                dim,
                attn_dim,
                t,
                wormhole_top_k,
                wormhole_threshold,
                k_min,
                wormhole_read_next,
                wormhole_sim_dim,
                wormhole_learned_weight,
                wormhole_chunk_size,
                wormhole_max_key_tokens,
            )
            if use_wormhole
            else None
        )
        n_att = int(use_temporal) + int(use_neighbor) + int(use_wormhole)
        self.fusion = nn.Sequential(
            nn.Linear(n_att * dim, attn_dim), nn.ReLU(), nn.Linear(attn_dim, attn_dim)
        )
        self.head = nn.Sequential(nn.Linear(attn_dim, dim), nn.ReLU(), nn.Linear(dim, 1))
        if self.residual:
            with torch.no_grad():
                self.head[-1].weight.mul_(0.01)
                self.head[-1].bias.zero_()
        self.last_stats: dict[str, Tensor] = {}
        self.last_maps: dict[str, Tensor] = {}

    # ------------------------------------------------------------------------------------------ per frame
    def _key_names(self) -> list[str]:
        names = []
        if self.use_temporal:
            names.append(f"patch/{self.temporal_band}")
        if self.use_neighbor:
            names.append(f"patch/{self.neighbor_band}")
        if self.use_wormhole:
            names += ["wh_uk", "wh_vk"]
        return sorted(set(names))

    def _emb(self, band: str) -> tuple[Tensor, Tensor]:
        return self.embed.band(self.feat_bands.index(band))

    def _per_frame(self, frames: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Everything computed from single frames: ``frames (B, S, H, W)`` -> dict of ``(B, S, ...)``.

        Keys: ``x (B, S, H, W)``, ``patch/<band> (B, S, k*k, H, W)`` and, with the wormhole, ``wh_uq
        (B, S, H*W, Du)``, ``wh_uk (B, S, P, Du)``, ``wh_vk (B, S, P, k*k)``. Also returns band energies.
        """
        bands, energy = self.bands(frames)  # (B, S, nb, H, W)
        pt = patches(bands.index_select(2, self._feat_idx), self.feature_kernel)  # (B, S, nf, k*k, H, W)
        out = {"x": frames}
        for i, name in enumerate(self.feat_bands):  # views, one per used band
            out[f"patch/{name}"] = pt[:, :, i]
        if self.wormhole is not None:
            sb = self.wormhole_sim_band
            sim_scalar = bands[:, :, self.band_list.index(sb)]
            w, c = self._emb(sb) if sb in self.feat_bands else (None, None)
            out["wh_uq"], out["wh_uk"] = self.wormhole.descriptors(sim_scalar, out.get(f"patch/{sb}"), w, c)
            out["wh_vk"] = self.wormhole.pool_values(out[f"patch/{self.wormhole_value_band}"])
        return out, energy

    # ------------------------------------------------------------------------------------------ attention
    def _attend(self, keys: dict[str, Tensor], query: dict[str, Tensor], energy: Tensor) -> Tensor:
        """Predict the next frame of each query frame.

        ``keys``: the key quantities (:meth:`_key_names`) of ``Sq + T - 1`` chronological frames, the last
        ``Sq`` being the query frames; ``query``: ``x``, ``wh_uq`` and ``patch/<value band>`` of the ``Sq``
        query frames. Returns ``(B, Sq, H, W)``.
        """
        t, x = self.time_depth, query["x"]
        b, sq, h, w = x.shape
        ctxs: list[Tensor] = []  # patch-space contexts (B, N, Sq, k*k), one per attention, fusion order
        gate = None
        stats: dict[str, Tensor] = {}
        maps: dict[str, Tensor] = {}
        if self.temporal is not None:
            kv = keys[f"patch/{self.temporal_band}"].flatten(3).permute(0, 3, 1, 2)  # (B, N, Sq+T-1, k*k)
            pbar, ent, wmap = self.temporal(
                kv[:, :, t - 1 :], kv, *self._emb(self.temporal_band), want_map=self.return_maps
            )
            ctxs.append(pbar)
            stats["temporal_entropy"] = ent.mean()
            if wmap is not None:
                maps["temporal_weights"] = wmap.reshape(b, h, w, t)
        if self.neighbor is not None:
            kv = keys[f"patch/{self.neighbor_band}"][:, t - 1 - self.layer_range :]  # (B, Sq+L, k*k, H, W)
            q = kv[:, self.layer_range :].flatten(3).permute(0, 3, 1, 2)
            pbar, ent = self.neighbor(q, kv, *self._emb(self.neighbor_band))
            ctxs.append(pbar)
            stats["neighbor_entropy"] = ent.mean()
        if self.wormhole is not None:
            qv = query[f"patch/{self.wormhole_value_band}"].flatten(3).transpose(2, 3)  # (B, Sq, N, k*k)
            pbar, gate, wst, link_map = self.wormhole(
                qv,
                query["wh_uq"],
                keys["wh_uk"],
                keys["wh_vk"],
                *self._emb(self.wormhole_value_band),
                want_map=self.return_maps,
            )
            ctxs.append(pbar.transpose(1, 2))  # (B, N, Sq, k*k)
            gate = gate.transpose(1, 2)
            stats.update(wst)
            if link_map is not None:
                maps["wormhole_link_counts"] = link_map.view(b, h, w)
        for i, name in enumerate(self.band_list):
            stats[f"band_energy/{name}"] = energy[i]
        delta = self._head(ctxs, gate).squeeze(-1).permute(0, 2, 1).reshape(b, sq, h, w)  # (B, Sq, H, W)
        self.last_stats = {k: v.detach() for k, v in stats.items()}
        self.last_maps = maps
        if self.residual:
            return clamp01_straight_through(x + delta.to(x.dtype))
        return torch.sigmoid(delta).to(x.dtype)

    def _head(self, ctxs: list[Tensor], gate: Tensor | None) -> Tensor:
        """Attention read-outs + fusion + head: contexts ``(B, N, Sq, k*k)`` -> ``(B, N, Sq, 1)``.

        Computes exactly ``head(fusion(concat_i out_i))`` with ``out_i = W_o W_v (W pbar_i + c)`` (times
        the wormhole gate), ``fusion = L1 -> ReLU -> L2`` and ``head = L3 -> ReLU -> L4``, but with the
        linear maps that follow each other folded into single small matrices: the read-outs into ``L1``'s
        column blocks (``k*k``-dim inputs instead of ``D``) and ``L3 L2`` into one ``A -> D`` map.
        The wormhole context is zero where ``gate`` is 0 (no link), so only its bias needs the gate.
        """
        l1, l2, l3, l4 = self.fusion[0], self.fusion[2], self.head[0], self.head[2]
        blocks = l1.weight.split(self.dim, dim=1)  # (A, D) per attention
        mats, bias, gate_bias = [], l1.bias, None
        for i, (mod, band) in enumerate(self._attention_bands()):  # <= 3 tiny matrix products
            bo, co = mod.proj.out_map(*self._emb(band))  # (k*k, D), (D,)
            mats.append(bo @ blocks[i].t())  # (k*k, A)
            if mod is self.wormhole:
                gate_bias = co @ blocks[i].t()
            else:
                bias = bias + co @ blocks[i].t()
        hid = (torch.cat(ctxs, dim=-1) if len(ctxs) > 1 else ctxs[0]) @ torch.cat(mats, dim=0) + bias
        if gate is not None and gate_bias is not None:
            hid = hid + gate * gate_bias
        w23 = l3.weight @ l2.weight  # (D, A)
        b23 = l3.weight @ l2.bias + l3.bias
        return l4(torch.relu(torch.relu(hid) @ w23.t() + b23))

    def _attention_bands(self) -> list[tuple[nn.Module, str]]:
        out: list[tuple[nn.Module, str]] = []
        if self.temporal is not None:
            out.append((self.temporal, self.temporal_band))
        if self.neighbor is not None:
            out.append((self.neighbor, self.neighbor_band))
        if self.wormhole is not None:
            out.append((self.wormhole, self.wormhole_value_band))
        return out

    def _query(self, per: dict[str, Tensor], sq: int) -> dict[str, Tensor]:
        names = ["x"]
        if self.wormhole is not None:
            names += ["wh_uq", f"patch/{self.wormhole_value_band}"]
        return {k: per[k][:, -sq:] for k in names}

    # ------------------------------------------------------------------------------------------ modes
    def _window(self, frames: Tensor) -> Tensor:
        """Last ``T`` frames, front-padded with copies of the first frame if fewer: ``(B, T, H, W)``."""
        x = check_frames(frames, 1)
        s = x.shape[1]
        if s >= self.time_depth:
            return x[:, -self.time_depth :]
        return torch.cat([x[:, :1].expand(-1, self.time_depth - s, -1, -1), x], dim=1)

    def forward(self, frames: Tensor) -> Tensor:
        """``frames (B, S, H, W)`` (``x_t`` last; any ``S >= 1``, only the last ``T`` are read) -> ``(B, H, W)``."""
        per, energy = self._per_frame(self._window(frames))
        keys = {k: per[k] for k in self._key_names()}
        return self._attend(keys, self._query(per, 1), energy)[:, 0]

    def forward_sequence(self, frames: Tensor, start: int = 0) -> Tensor:
        """Parallel mode: ``frames (B, S, H, W)`` -> ``(B, S - start, H, W)``; output ``t - start`` predicts
        frame ``t + 1`` from frames ``<= t`` only (history before frame 0 = copies of frame 0).

        ``start`` skips the attention for the first query frames (training on positions with a full window
        uses ``start = T - 1``: no padded history and ``S - start`` instead of ``S`` query frames of work).
        """
        x = check_frames(frames, 1)
        s = x.shape[1]
        if not 0 <= start < s:
            raise ValueError(f"start must be in [0, {s}) for {s} frames; got {start}")
        per, energy = self._per_frame(x)
        first = start - (self.time_depth - 1)  # the oldest key frame of query frame `start`
        keys = {}
        for k in self._key_names():
            v = per[k]
            keys[k] = v[:, first:] if first >= 0 else torch.cat([v[:, :1].expand(-1, -first, *v.shape[2:]), v], 1)
        return self._attend(keys, self._query(per, s - start), energy)

    def init_state(self, batch: int, height: int, width: int) -> dict:
        """Empty streaming state for ``batch`` streams of ``height x width`` frames.

        The ring buffer of per-frame key quantities (band patches, wormhole tokens; ``T`` slots) is filled with copies of the first frame
        on the first :meth:`step` (the same padding as :meth:`forward_sequence`).
        """
        return {"ring": None, "pos": -1, "shape": (int(batch), int(height), int(width))}

    def step(self, frame: Tensor, state: dict) -> tuple[Tensor, dict]:
        """Streaming mode: ``frame (B, H, W)`` = ``x_t`` -> prediction of ``x_{t+1}`` ``(B, H, W)``, new state.

        Per-frame quantities are computed once and written to slot ``t mod T`` of the ring buffer (index
        arithmetic, no roll); the window is read in chronological order with one ``index_select``.
        Out-of-place writes when autograd is recording, in-place otherwise.
        """
        if frame.ndim != 3 or tuple(frame.shape) != tuple(state["shape"]):
            raise ValueError(
                f"frame must have shape (B, H, W) = {tuple(state['shape'])}; got {tuple(frame.shape)}"
            )
        t = self.time_depth
        per, energy = self._per_frame(frame.unsqueeze(1))
        names = self._key_names()
        if state["ring"] is None:
            ring = {k: per[k].expand(-1, t, *per[k].shape[2:]).clone() for k in names}
            pos = 0
        else:
            ring, pos = dict(state["ring"]), (state["pos"] + 1) % t
            slot = torch.tensor([pos], device=frame.device)
            for k in names:
                if torch.is_grad_enabled():
                    ring[k] = ring[k].index_copy(1, slot, per[k])
                else:
                    ring[k].index_copy_(1, slot, per[k])
        order = (torch.arange(1, t + 1, device=frame.device) + pos) % t  # oldest .. newest (= slot pos)
        keys = {k: ring[k].index_select(1, order) for k in names}
        pred = self._attend(keys, self._query(per, 1), energy)[:, 0]
        return pred, {"ring": ring, "pos": pos, "shape": state["shape"]}

    # ------------------------------------------------------------------------------------------ memory
    def estimate_peak_bytes(
        self, batch: int, grid: int, n_query: int = 1, bytes_per_element: int = 4
    ) -> dict:
        """Analytic estimate of the activation memory of one forward (+ what backward keeps), in bytes.

        ``n_query = 1`` is one prediction step (``forward``/``step``); ``n_query = S`` is
        ``forward_sequence`` on a clip of ``S`` frames. Returns per-part bytes and ``"total"`` (their sum,
        i.e. assuming nothing is freed), with the GPU block sizes (``time_block`` unset: the window).
        Parameters and optimizer state are not included. Measured on an
        H100 (xlarge, 128x128, fp32): peak 0.48 / 0.86 / 7.4 GiB for batch 1 / batch 8 / batch 8 with a
        16-frame clip, against estimates of 0.67 / 1.84 / 13.9 GiB.
        """
        e, b, n, d, a, t = bytes_per_element, batch, grid * grid, self.dim, self.attn_dim, self.time_depth
        kk = self.feature_kernel**2
        sk = n_query + t - 1
        frames = n_query if n_query > 1 else t
        parts = {
            "bands": e * b * frames * n * (3 * len(self.band_list) + 2),
            "patches": e * b * frames * n * kk * len(self.feat_bands) * 2,
        }
        if self.temporal is not None:
            c = min(n_query, self.temporal.block or t)
            nb = math.ceil(n_query / c)
            parts["temporal"] = (
                e
                * b
                * n
                * (2 * sk * kk + n_query * (3 * kk + 2 * d) + 4 * nb * c * (c + t - 1) + (nb - 1) * c * kk)
            )
        if self.neighbor is not None:
            f = self.layer_range + 1
            c = min(n_query, self.neighbor.block or f)
            nb = math.ceil(n_query / c)
            nk = (n_query + f - 1) * 9 * kk
            parts["neighbor"] = (
                e
                * b
                * n
                * (
                    3 * nk
                    + n_query * (3 * kk + 2 * d)
                    + 4 * nb * c * (c + f - 1) * 9
                    + nb * (c + f - 1) * 9 * kk
                )
            )
        if self.wormhole is not None:
            parts.update(self.wormhole.estimate_bytes(b, grid, grid, n_query, d, kk, e))
        n_att = len([m for m in (self.temporal, self.neighbor, self.wormhole) if m is not None])
        parts["fusion_head"] = e * b * n * n_query * (n_att * kk + 3 * a + 2 * d + 4)
        parts["total"] = sum(parts.values())
        return parts

    def extra_repr(self) -> str:
        ph = (
            pooled_grid(self.grid, self.grid, self.wormhole.max_key_tokens)
            if (self.grid and self.wormhole)
            else None
        )
        return (
            f"T={self.time_depth}, D={self.dim}, A={self.attn_dim}, bands={self.band_list}, "
            f"residual={self.residual}, grid={self.grid}" + (f", wormhole_key_grid={ph}" if ph else "")
        )
