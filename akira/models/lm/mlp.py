"""Dense MLPs: the baseline `DenseMLP` and `SplitDenseMLP` (same function, hidden units in per-band groups)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DenseMLP(nn.Module):
    """`(..., D) -> (..., D)`: Linear(D, H) -> GELU -> Dropout -> Linear(H, D) -> Dropout."""

    def __init__(self, d_model: int, hidden: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(d_model, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, d_model, bias=bias)
        self.drop = nn.Dropout(dropout)

    def reset_parameters(self, std: float, out_std: float) -> None:
        nn.init.normal_(self.fc1.weight, 0.0, std)
        nn.init.normal_(self.fc2.weight, 0.0, out_std)
        for lin in (self.fc1, self.fc2):
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor, ablate_band: int | None = None) -> torch.Tensor:
        if ablate_band is not None:
            raise ValueError("ablate_band: the dense MLP has no bands (use mlp='band' or 'dense_split')")
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class SplitDenseMLP(nn.Module):
    """The dense MLP `D -> H -> D` whose H hidden units form per-band groups of separate Parameters.

    Group i owns fc1 rows + biases and fc2 columns of hidden units ``hidden_sizes[i]`` (proportional to the
    band widths), so it can take its own learning rate; fc2's bias (an output, not a hidden unit) is shared.
    At forward time the groups are concatenated: the function is exactly a `DenseMLP` with the
    concatenated weights. `(..., D) -> (..., D)`.
    """

    def __init__(self, d_model: int, hidden_sizes: list[int], dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.hidden_sizes = list(hidden_sizes)
        self.fc1_w = nn.ParameterList([nn.Parameter(torch.empty(h, d_model)) for h in hidden_sizes])
        self.fc1_b = nn.ParameterList([nn.Parameter(torch.zeros(h)) for h in hidden_sizes]) if bias else None
        self.fc2_w = nn.ParameterList([nn.Parameter(torch.empty(d_model, h)) for h in hidden_sizes])
        self.fc2_b = nn.Parameter(torch.zeros(d_model)) if bias else None
        self.drop = nn.Dropout(dropout)
        group = torch.repeat_interleave(torch.arange(len(hidden_sizes)), torch.tensor(hidden_sizes))
        self.register_buffer("hidden_group", group, persistent=False)  # (H,) band id of each hidden unit

    def reset_parameters(self, std: float, out_std: float) -> None:
        for w in self.fc1_w:
            nn.init.normal_(w, 0.0, std)
        for w in self.fc2_w:
            nn.init.normal_(w, 0.0, out_std)
        for b in [*(self.fc1_b or []), *([self.fc2_b] if self.fc2_b is not None else [])]:
            nn.init.zeros_(b)

    def band_parameters(self) -> dict[str, int]:
        """Local parameter name -> band index, for the per-band optimizer groups."""
        out = {f"fc1_w.{i}": i for i in range(len(self.hidden_sizes))}
        out.update({f"fc2_w.{i}": i for i in range(len(self.hidden_sizes))})
        if self.fc1_b is not None:
            out.update({f"fc1_b.{i}": i for i in range(len(self.hidden_sizes))})
        return out

    def dense_weights(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """(W1 (H, D), b1 (H,), W2 (D, H), b2 (D,)) of the equivalent dense MLP."""
        b1 = torch.cat(list(self.fc1_b)) if self.fc1_b is not None else None
        return torch.cat(list(self.fc1_w)), b1, torch.cat(list(self.fc2_w), dim=1), self.fc2_b

    def forward(self, x: torch.Tensor, ablate_band: int | None = None) -> torch.Tensor:
        """x (..., D) -> (..., D); ``ablate_band=i`` zeroes hidden group i's contribution."""
        w1, b1, w2, b2 = self.dense_weights()
        h = self.drop(F.gelu(F.linear(x, w1, b1)))
        if ablate_band is not None:
            h = h * (self.hidden_group != ablate_band).to(h.dtype)
        return self.drop(F.linear(h, w2, b2))
