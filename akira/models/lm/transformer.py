"""`Transformer`: one configurable pre-LN decoder LM (baseline, AKIRA band layer, wormhole, dense_split)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import band_mlp_kernel
from .attention import CausalSelfAttention, RotaryEmbedding
from .band import BandLayerNorm, BandMLP
from .config import LMConfig
from .fused_loss import linear_cross_entropy
from .mlp import DenseMLP, SplitDenseMLP
from .params import band_hidden_sizes, dense_split_sizes, parameter_count
from .wormhole import CrossBandWormhole

LOOP_MIN_EXPANSION = 12  # ``auto`` uses one matmul per band from this mean band-MLP expansion on


def resolve_band_impl(cfg: LMConfig, hidden: tuple[int, ...]) -> str:
    """``auto`` -> ``block_diag`` below `LOOP_MIN_EXPANSION`; from it on ``fused`` where Triton is installed (it
    runs the loop on non-CUDA tensors), else ``loop``.

    Measured (bf16, compiled, fwd+bwd): the band MLPs alone on 32k tokens on an H100 at e=4 block_diag 2.4 ms
    vs bmm 2.9 / loop 4.3, at e=24 (params-matched) 7.7 vs 12.7 / 6.5; whole training steps of the
    `no_wormhole_matched` arm (e~24) on an H200: loop 66.3 ms vs block_diag 69.9 ms; with the fused kernel as it
    is now (one launch per padded band width, W2 read transposed) fused 51.6 ms / 13.6 GB vs loop 57.0 / 23.3,
    and with dropout 0.1 fused 69.9 ms / 13.8 GB vs loop 75.7 / 25.9 (benchmarks/RESULTS.md).
    Only e=4 and e~24 were measured; the threshold between them is a guess.
    """
    if cfg.band_impl != "auto":
        return cfg.band_impl
    expansion = sum(hidden) / sum(cfg.band_widths)
    if expansion < LOOP_MIN_EXPANSION:
        return "block_diag"
    return "fused" if band_mlp_kernel.available() else "loop"


class Block(nn.Module):
    """Pre-LN decoder layer `(B, S, D) -> (B, S, D)`:
    x += Attn(LN(x)); x += MLP(LN(x)) (dense, dense_split, or per-band LN + MLP); x += Wormhole(x)."""

    def __init__(self, cfg: LMConfig, rotary: RotaryEmbedding | None, band_hidden: tuple[int, ...] | None):
        super().__init__()
        d = cfg.d_model
        self.ln_1 = nn.LayerNorm(d, eps=cfg.layer_norm_eps, bias=cfg.bias)
        self.attn = CausalSelfAttention(d, cfg.n_head, cfg.dropout, cfg.bias, rotary)
        if cfg.mlp == "band":
            self.ln_2 = BandLayerNorm(cfg.band_widths, cfg.layer_norm_eps, cfg.bias)
            self.mlp = BandMLP(cfg.band_widths, band_hidden, cfg.dropout, cfg.bias,
                               resolve_band_impl(cfg, band_hidden), cfg.fused_bf16_gelu)
        else:
            self.ln_2 = nn.LayerNorm(d, eps=cfg.layer_norm_eps, bias=cfg.bias)
            if cfg.mlp == "dense":
                self.mlp = DenseMLP(d, cfg.mlp_expansion * d, cfg.dropout, cfg.bias)
            else:
                self.mlp = SplitDenseMLP(d, list(dense_split_sizes(cfg)), cfg.dropout, cfg.bias)
        self.wormhole = (CrossBandWormhole(cfg.band_widths, cfg.cross_dim, cfg.wormhole_pairs, cfg.wormhole_top_k,
                                           cfg.wormhole_threshold, cfg.bias, cfg.wormhole_attention,
                                           cfg.wormhole_gate)
                         if cfg.wormhole else None)

    def forward(self, x: torch.Tensor, ablate_band: int | None = None, need_weights: bool = False):
        """x (B, S, D) -> (B, S, D), or (x, attention probs (B, H, S, S)) when ``need_weights``."""
        probs = None
        if need_weights:
            a, probs = self.attn(self.ln_1(x), need_weights=True)
        else:
            a = self.attn(self.ln_1(x))
        x = x + a
        if isinstance(self.mlp, BandMLP):   # the fused band MLP applies ln_2 on chip
            x = x + self.mlp(x, ablate_band=ablate_band, norm=self.ln_2)
        else:
            x = x + self.mlp(self.ln_2(x), ablate_band=ablate_band)
        if self.wormhole is not None:
            x = x + self.wormhole(x)
        return (x, probs) if need_weights else x


class Transformer(nn.Module):
    """Decoder-only LM. ``forward(idx (B, S) long) -> logits (B, S, V)``;
    ``forward(idx, targets (B, S) long) -> (logits, mean cross-entropy)`` where ``targets[:, t]`` is the token
    after ``idx[:, t]`` (``-100`` = ignored); with ``fused_loss`` the logits are not formed and the first
    element is None. ``ablate_band=i`` zeroes band i's MLP output in every layer
    (band model) or hidden group i (dense_split) for ``band/<i>/delta_loss``.

    Build with ``Transformer(LMConfig(...))`` or ``Transformer(**kwargs)`` (same keys as `LMConfig`).
    """

    def __init__(self, config: LMConfig | None = None, **kwargs):
        super().__init__()
        if config is None:
            config = LMConfig(**kwargs)
        elif kwargs:
            config = config.replace(**kwargs)
        self.config = cfg = config
        self.band_hidden = band_hidden_sizes(cfg) if cfg.mlp == "band" else None
        d = cfg.d_model
        self.wte = nn.Embedding(cfg.vocab_size, d)
        self.wpe = nn.Embedding(cfg.max_seq_len, d) if cfg.positional == "learned" else None
        rotary = (RotaryEmbedding(cfg.head_dim, cfg.max_seq_len, cfg.rope_base) if cfg.positional == "rotary"
                  else None)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg, rotary, self.band_hidden) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(d, eps=cfg.layer_norm_eps, bias=cfg.bias)
        self.lm_head = nn.Linear(d, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.reset_parameters()

    # -- init -----------------------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """N(0, init_std) for every matrix and embedding, zero biases, LayerNorm (1, 0); with
        ``scaled_residual_init`` the matrices writing into the residual stream use init_std / sqrt(2 L)."""
        std = self.config.init_std
        out_std = std / math.sqrt(2 * self.config.n_layer) if self.config.scaled_residual_init else std
        for m in self.modules():
            if m is self:
                continue
            if isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, 0.0, std)
            elif isinstance(m, nn.LayerNorm):
                m.reset_parameters()
            elif hasattr(m, "reset_parameters") and not isinstance(m, (nn.Linear, nn.Dropout)):
                m.reset_parameters(std, out_std)
        if not self.config.tie_embeddings:
            nn.init.normal_(self.lm_head.weight, 0.0, std)

    # -- forward --------------------------------------------------------------------------------------
    def _embed(self, idx: torch.Tensor) -> torch.Tensor:
        if idx.dim() != 2:
            raise ValueError(f"idx: expected token ids of shape (B, S), got shape {tuple(idx.shape)}")
        s = idx.shape[1]
        if s > self.config.max_seq_len:
            raise ValueError(f"idx: sequence length {s} exceeds model.max_seq_len={self.config.max_seq_len}")
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(s, device=idx.device))
        return self.drop(x)

    def _check_ablate(self, ablate_band: int | None) -> None:
        if ablate_band is None:
            return
        nb = self.config.n_bands
        if nb == 0 or not 0 <= int(ablate_band) < nb:
            raise ValueError(f"ablate_band: must be in [0, {nb}) for mlp={self.config.mlp!r}, got {ablate_band}")

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *, ablate_band: int | None = None):
        self._check_ablate(ablate_band)
        x = self._embed(idx)
        for block in self.blocks:
            x = block(x, ablate_band)
        h = self.ln_f(x)
        if targets is not None and self.config.fused_loss:  # no (B, S, V) logits: (None, loss)
            return None, linear_cross_entropy(h, self.lm_head.weight, targets, self.config.fused_loss_chunk)
        logits = self.lm_head(h)
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
        return logits, loss

    @torch.no_grad()
    def forward_with_attention(self, idx: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(logits (B, S, V), per-layer attention probabilities [(B, H, S, S)] * n_layer). Analysis only."""
        x, probs = self._embed(idx), []
        for block in self.blocks:
            x, p = block(x, need_weights=True)
            probs.append(p)
        return self.lm_head(self.ln_f(x)), probs

    @torch.no_grad()
    def forward_hidden(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Residual stream after the embedding and after every layer: [(B, S, D)] * (n_layer + 1)."""
        x = self._embed(idx)
        out = [x]
        for block in self.blocks:
            x = block(x)
            out.append(x)
        return out

    # -- accounting -----------------------------------------------------------------------------------
    def num_parameters(self, non_embedding: bool = True) -> int:
        """Parameter count; ``non_embedding`` excludes token and position embeddings and an untied LM head."""
        total = sum(p.numel() for p in self.parameters())
        if not non_embedding:
            return total
        total -= self.wte.weight.numel()
        if self.wpe is not None:
            total -= self.wpe.weight.numel()
        if not self.config.tie_embeddings:
            total -= self.lm_head.weight.numel()
        return total

    def parameter_count(self) -> dict[str, int]:
        """Closed-form counts (see `params.parameter_count`), equal to the built model's."""
        return parameter_count(self.config, self.band_hidden)

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward), PaLM / nanoGPT convention:
        6 * (non-embedding params + LM head) + 12 * n_layer * d_model * seq_len (attention scores and values),
        plus, for the wormhole, 18 * P * c * seq_len (P pair-heads of dim c / 2c) and 6 * sum over pairs of
        the per-pair output and gate maps (2c -> 2 d_i) per layer. Counts model FLOPs, not the extra work of
        padded or block-diagonal kernels."""
        cfg = self.config
        s = cfg.max_seq_len if seq_len is None else seq_len
        n = self.num_parameters(non_embedding=True) + cfg.vocab_size * cfg.d_model
        flops = 6 * n + 12 * cfg.n_layer * cfg.d_model * s
        for block in self.blocks:
            w = block.wormhole
            if w is not None:
                flops += 18 * len(w.pairs) * w.c * s + 6 * sum(2 * w.c * 2 * w.widths[i] for i, _ in w.pairs)
        return float(flops)

    @property
    def n_bands(self) -> int:
        return self.config.n_bands
