"""`LMConfig`: every option of the decoder LM, validated on construction, plus named presets.

Errors name the Hydra key (``model.<field>``) so a bad config fails with one clear line.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SEED_BAND_WIDTHS: tuple[int, ...] = (128, 96, 80, 64, 64, 48, 32)

POSITIONAL = ("learned", "rotary")
MLP_KINDS = ("dense", "band", "dense_split")
PAIRS = ("all", "complementary")
BAND_IMPLS = ("auto", "block_diag", "bmm", "loop", "fused")
WORMHOLE_ATTENTION = ("sdpa", "triton")
WORMHOLE_GATE = ("auto", "torch", "triton")


def _err(key: str, msg: str) -> ValueError:
    return ValueError(f"model.{key}: {msg}")


@dataclass
class LMConfig:
    """Hyper-parameters of the pre-LN decoder (`Transformer`).

    Defaults reproduce the seed's reference *baseline* (REFERENCE §2.2): GPT-2 vocabulary, 6 x 512, 8 heads,
    learned absolute positions, biases, untied head, dropout 0.1, dense MLP 512 -> 2048 -> 512.
    ``mlp="band"`` gives the AKIRA v1 band layer, ``wormhole=True`` its cross-band wormhole,
    ``mlp="dense_split"`` the dense MLP with its hidden units split into per-band parameter groups.
    """

    vocab_size: int = 50257
    n_layer: int = 6
    d_model: int = 512
    n_head: int = 8
    max_seq_len: int = 512
    dropout: float = 0.1
    bias: bool = True
    positional: str = "learned"          # learned | rotary
    rope_base: float = 10000.0
    tie_embeddings: bool = False
    layer_norm_eps: float = 1e-5
    init_std: float = 0.02
    scaled_residual_init: bool = False   # GPT-2: residual-output weights get init_std / sqrt(2 * n_layer)
    # MLP
    mlp: str = "dense"                   # dense | band | dense_split
    mlp_expansion: int = 4               # dense / dense_split hidden = mlp_expansion * d_model
    band_widths: tuple[int, ...] = field(default_factory=lambda: SEED_BAND_WIDTHS)
    band_expansion: float | None = None  # band MLP hidden_i = round(e * width_i); None -> mlp_expansion
    params_matched: bool = False         # band model: solve band_expansion so non-embedding params match dense
    band_impl: str = "auto"              # auto | block_diag | bmm | loop | fused (auto: transformer.resolve_band_impl)
    fused_bf16_gelu: bool = True         # fused band MLP, bf16: GELU in packed bf16 (as exact as the loop)
    # cross-band wormhole (band model only)
    wormhole: bool = False
    wormhole_pairs: str = "all"          # all | complementary
    wormhole_top_k: int | None = None    # keep the top_k causal scores per query (None: dense causal)
    wormhole_threshold: float = 0.5      # hard gate g * 1[g > threshold]
    wormhole_cross_dim: int | None = None  # c; None -> min(band_widths) // 2 (seed: 16)
    wormhole_attention: str = "sdpa"     # pair attention kernel: sdpa | triton (pair_attention_kernel; slower on an H200)
    wormhole_gate: str = "auto"          # gated sum over sources: auto (triton on CUDA with Triton) | torch | triton
    # head + loss in chunks of tokens (akira.models.lm.fused_loss): no (tokens x vocab) logits in training
    fused_loss: bool = False
    fused_loss_chunk: int = 4096

    def __post_init__(self) -> None:
        self.band_widths = tuple(int(w) for w in self.band_widths)
        for key in ("vocab_size", "n_layer", "d_model", "n_head", "max_seq_len", "mlp_expansion", "fused_loss_chunk"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise _err(key, f"must be a positive integer, got {v!r}")
        if self.d_model % self.n_head:
            raise _err("n_head", f"{self.n_head} heads do not divide d_model={self.d_model}")
        if not 0.0 <= self.dropout < 1.0:
            raise _err("dropout", f"must be in [0, 1), got {self.dropout}")
        if self.positional not in POSITIONAL:
            raise _err("positional", f"must be one of {POSITIONAL}, got {self.positional!r}")
        if self.positional == "rotary" and (self.d_model // self.n_head) % 2:
            raise _err("n_head", f"rotary positions need an even head dim, got {self.d_model // self.n_head}")
        if self.mlp not in MLP_KINDS:
            raise _err("mlp", f"must be one of {MLP_KINDS}, got {self.mlp!r}")
        if self.band_impl not in BAND_IMPLS:
            raise _err("band_impl", f"must be one of {BAND_IMPLS}, got {self.band_impl!r}")
        if self.mlp in ("band", "dense_split"):
            if len(self.band_widths) < 2 or min(self.band_widths) < 1:
                raise _err("band_widths", f"needs at least 2 positive widths, got {list(self.band_widths)}")
            if sum(self.band_widths) != self.d_model:
                raise _err("band_widths", f"widths {list(self.band_widths)} sum to {sum(self.band_widths)}, "
                                          f"not d_model={self.d_model}")
        if self.band_expansion is not None:
            if self.mlp != "band":
                raise _err("band_expansion", f"only applies to mlp='band', got mlp={self.mlp!r}")
            if self.params_matched:
                raise _err("band_expansion", "set either band_expansion or params_matched=true, not both")
            if not self.band_expansion > 0:
                raise _err("band_expansion", f"must be > 0, got {self.band_expansion}")
        if self.params_matched and self.mlp != "band":
            raise _err("params_matched", f"only applies to mlp='band', got mlp={self.mlp!r}")
        if self.wormhole and self.mlp != "band":
            raise _err("wormhole", f"needs the band model (mlp='band'), got mlp={self.mlp!r}")
        if self.wormhole_pairs not in PAIRS:
            raise _err("wormhole_pairs", f"must be one of {PAIRS}, got {self.wormhole_pairs!r}")
        if self.wormhole_pairs == "complementary" and self.wormhole and len(self.band_widths) != 7:
            raise _err("wormhole_pairs", f"'complementary' is defined for 7 bands, got {len(self.band_widths)}")
        if self.wormhole_top_k is not None and (isinstance(self.wormhole_top_k, bool) or self.wormhole_top_k < 1):
            raise _err("wormhole_top_k", f"must be a positive integer or null, got {self.wormhole_top_k!r}")
        if not 0.0 <= self.wormhole_threshold < 1.0:
            raise _err("wormhole_threshold", f"must be in [0, 1), got {self.wormhole_threshold}")
        if self.wormhole_attention not in WORMHOLE_ATTENTION:
            raise _err("wormhole_attention", f"must be one of {WORMHOLE_ATTENTION}, got {self.wormhole_attention!r}")
        if self.wormhole_gate not in WORMHOLE_GATE:
            raise _err("wormhole_gate", f"must be one of {WORMHOLE_GATE}, got {self.wormhole_gate!r}")
        if self.wormhole_cross_dim is not None and self.wormhole_cross_dim < 1:
            raise _err("wormhole_cross_dim", f"must be a positive integer or null, got {self.wormhole_cross_dim}")

    # -- derived -------------------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def n_bands(self) -> int:
        """Number of bands (0 for the plain dense MLP, which has no band groups)."""
        return len(self.band_widths) if self.mlp in ("band", "dense_split") else 0

    @property
    def cross_dim(self) -> int:
        return self.wormhole_cross_dim or max(1, min(self.band_widths) // 2)

    def replace(self, **changes: Any) -> LMConfig:
        return dataclasses.replace(self, **changes)


_PRESETS: dict[str, dict[str, Any]] = {
    # the seed's reference models (REFERENCE §2.2-2.3): learned positions, biases, untied head, dropout 0.1
    "baseline": {"mlp": "dense"},
    "band": {"mlp": "band"},
    "band_wormhole": {"mlp": "band", "wormhole": True},
    "dense_split": {"mlp": "dense_split"},
    # a few-second CPU model for tests and smoke checks
    "tiny": {"vocab_size": 128, "n_layer": 2, "d_model": 64, "n_head": 4, "max_seq_len": 64, "dropout": 0.0,
             "band_widths": (16, 12, 10, 8, 8, 6, 4)},
}


def lm_preset(name: str, **overrides: Any) -> LMConfig:
    """Named configuration (`baseline`, `band`, `band_wormhole`, `dense_split`, `tiny`) with overrides."""
    if name not in _PRESETS:
        raise ValueError(f"model.preset: unknown preset {name!r}; choose one of {sorted(_PRESETS)}")
    return LMConfig(**{**_PRESETS[name], **overrides})
