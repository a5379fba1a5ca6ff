"""Causal multi-head self-attention (SDPA flash path) and rotary position embeddings."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (GPT-NeoX half-split convention) for `(B, H, S, hd)` queries/keys."""

    def __init__(self, head_dim: int, max_seq_len: int, base: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)  # (S_max, hd/2)
        self.register_buffer("cos", freqs.cos(), persistent=False)
        self.register_buffer("sin", freqs.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, H, S, hd) -> same shape, position s rotated by s * inv_freq."""
        s, half = x.shape[-2], x.shape[-1] // 2
        cos, sin = self.cos[:s].to(x.dtype), self.sin[:s].to(x.dtype)
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention over all channels: `(B, S, D) -> (B, S, D)`.

    Uses `F.scaled_dot_product_attention(is_causal=True)` (flash / memory-efficient kernels). With
    ``need_weights=True`` the probabilities are computed explicitly and returned as `(B, H, S, S)` (analysis
    only: O(S^2) memory).
    """

    def __init__(self, d_model: int, n_head: int, dropout: float = 0.0, bias: bool = True,
                 rotary: RotaryEmbedding | None = None):
        super().__init__()
        self.n_head, self.head_dim = n_head, d_model // n_head
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.proj = nn.Linear(d_model, d_model, bias=bias)
        self.attn_dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)
        self.rotary = rotary

    def reset_parameters(self, std: float, out_std: float) -> None:
        nn.init.normal_(self.qkv.weight, 0.0, std)
        nn.init.normal_(self.proj.weight, 0.0, out_std)
        for lin in (self.qkv, self.proj):
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor, need_weights: bool = False):
        """x (B, S, D) -> y (B, S, D), or (y, probs (B, H, S, S)) when ``need_weights``."""
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        p_drop = self.attn_dropout if self.training else 0.0
        if not need_weights:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p_drop, is_causal=True)
            return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(b, s, d)))
        scores = (q @ k.transpose(-2, -1)).float() * self.head_dim ** -0.5
        future = torch.ones(s, s, dtype=torch.bool, device=x.device).triu(1)
        probs = scores.masked_fill(future, float("-inf")).softmax(-1)
        y = F.dropout(probs.to(v.dtype), p_drop, self.training) @ v
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(b, s, d))), probs
