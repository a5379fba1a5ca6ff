"""Streaming second moments of paired activations (two models on the same probe rows).

`PairMoments` accumulates, chunk by chunk, everything the alignment statistics need (correlations, CKA,
Procrustes) in O(U^2) memory, whatever the number of rows: counts, sums and cross products of A (n, Ua) and
B (n, Ub), plus a *mismatched* cross product A_i B_pi(i) where pi pairs each sequence with the previous
sequence of the same chunk (a row-shuffled null that keeps both marginals).

Data are shifted by the first chunk's means before the products (numerically stable in float32); the
accumulators are float64.
"""
from __future__ import annotations

import torch


class PairMoments:
    """Moments of paired rows. ``update(a (n_seq, S, Ua), b (n_seq, S, Ub))``; sequences are rows' groups."""

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.n = 0
        self.shift_a = self.shift_b = None
        self.s_a = self.s_b = None
        self.m_aa = self.m_bb = self.m_ab = self.m_ab_null = None

    def update(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """a (n_seq, S, Ua), b (n_seq, S, Ub): rows a[i, t] and b[i, t] are the same probe token."""
        if a.shape[:2] != b.shape[:2]:
            raise ValueError(f"a/b: row mismatch {tuple(a.shape[:2])} vs {tuple(b.shape[:2])}")
        if a.shape[0] < 2:
            raise ValueError("probe.batch_size: alignment needs at least 2 sequences per chunk (row-shuffled null)")
        a = a.to(self.device, torch.float32)
        b = b.to(self.device, torch.float32)
        if self.shift_a is None:
            self.shift_a = a.reshape(-1, a.shape[-1]).mean(0)
            self.shift_b = b.reshape(-1, b.shape[-1]).mean(0)
            ua, ub = a.shape[-1], b.shape[-1]
            z = dict(dtype=torch.float64, device=self.device)
            self.s_a, self.s_b = torch.zeros(ua, **z), torch.zeros(ub, **z)
            self.m_aa, self.m_bb = torch.zeros(ua, ua, **z), torch.zeros(ub, ub, **z)
            self.m_ab, self.m_ab_null = torch.zeros(ua, ub, **z), torch.zeros(ua, ub, **z)
        a = a - self.shift_a
        b = b - self.shift_b
        b_null = b.roll(1, dims=0)                                   # sequence i paired with sequence i-1
        a2, b2 = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
        self.n += a2.shape[0]
        self.s_a += a2.sum(0).double()
        self.s_b += b2.sum(0).double()
        self.m_aa += (a2.T @ a2).double()
        self.m_bb += (b2.T @ b2).double()
        self.m_ab += (a2.T @ b2).double()
        self.m_ab_null += (a2.T @ b_null.reshape(-1, b.shape[-1])).double()

    def merge(self, other: PairMoments) -> PairMoments:
        """Moments of the union of the rows of ``self`` and ``other`` (new object)."""
        if self.n == 0:
            return other
        if other.n == 0:
            return self
        out = PairMoments(self.device)
        out.n = self.n + other.n
        out.shift_a, out.shift_b = self.shift_a, self.shift_b
        da = (other.shift_a - self.shift_a).double()        # re-express other's moments around self's shift
        db = (other.shift_b - self.shift_b).double()
        n2 = other.n
        out.s_a = self.s_a + other.s_a + n2 * da
        out.s_b = self.s_b + other.s_b + n2 * db

        def cross(m, s_x, s_y, dx, dy):
            return m + torch.outer(s_x, dy) + torch.outer(dx, s_y) + n2 * torch.outer(dx, dy)

        out.m_aa = self.m_aa + cross(other.m_aa, other.s_a, other.s_a, da, da)
        out.m_bb = self.m_bb + cross(other.m_bb, other.s_b, other.s_b, db, db)
        out.m_ab = self.m_ab + cross(other.m_ab, other.s_a, other.s_b, da, db)
        out.m_ab_null = self.m_ab_null + cross(other.m_ab_null, other.s_a, other.s_b, da, db)
        return out

    # -- derived ----------------------------------------------------------------------------------------
    def _cov(self, m: torch.Tensor, s_x: torch.Tensor, s_y: torch.Tensor) -> torch.Tensor:
        mx, my = s_x / self.n, s_y / self.n
        return m / self.n - torch.outer(mx, my)

    def mean_a(self) -> torch.Tensor:
        return self.shift_a.double() + self.s_a / self.n

    def mean_b(self) -> torch.Tensor:
        return self.shift_b.double() + self.s_b / self.n

    def cov_aa(self) -> torch.Tensor:
        return self._cov(self.m_aa, self.s_a, self.s_a)

    def cov_bb(self) -> torch.Tensor:
        return self._cov(self.m_bb, self.s_b, self.s_b)

    def cov_ab(self, null: bool = False) -> torch.Tensor:
        """Cross-covariance (Ua, Ub); ``null=True``: with B's sequences mismatched (row-shuffled null)."""
        return self._cov(self.m_ab_null if null else self.m_ab, self.s_a, self.s_b)
