"""Clip datasets over the synthetic fields: an infinite sharded training stream and finite eval sets.

A clip is ``(L, grid, grid)`` float32 with ``L = history + horizon`` consecutive integer frame times;
batches are ``(B, L, grid, grid)``. Frames are generated on the fly, one ``generate`` call per batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from akira.data.fields.params import param_names, params_from_uniform, sample_params
from akira.data.fields.patterns import generate
from akira.data.fields.rng import uniforms


def _clip_frames(
    pattern: str, grid: int, times: Tensor, params: dict[str, Tensor], switch_period: int
) -> Tensor:
    """Clips with times ``(n, L)`` and per-clip params ``{name: (n,)}`` -> ``(n, L, grid, grid)``."""
    p: dict[str, Tensor | float] = {k: v[:, None] for k, v in params.items()}
    if pattern == "switching":
        p["switch_period"] = float(switch_period)
    return generate(pattern, times, grid, p)


class FieldClipStream(IterableDataset):
    """Training stream of batches ``(B, L, grid, grid)``; global sample ``i`` is a pure function of (seed, i).

    Random mode (``sequential=False``): sample ``i`` starts at ``t0 ~ U{0, ..., t_max - L}`` and (if
    ``vary_params``) draws its parameters from the ``train`` ranges, both from ``uniforms(seed, i)``; the
    stream is infinite. Sequential mode (the reference's online protocol): sample ``i`` is the clip
    starting at ``t = i`` with default parameters; it ends after the last clip inside ``[0, t_max)``.

    Sharding: the ``k``-th batch of rank ``r`` (of ``world_size``) holds global indices
    ``start_index + (k * world_size + r) * B + [0, B)``; DataLoader worker ``w`` of ``n`` yields
    ``k = w, w + n, ...`` so the DataLoader's round-robin order equals ``k = 0, 1, 2, ...`` whatever ``n``.
    """

    def __init__(
        self,
        pattern: str,
        grid: int,
        clip_len: int,
        batch_size: int,
        t_max: int,
        seed: int = 0,
        vary_params: bool = True,
        switch_period: int = 50,
        sequential: bool = False,
        start_index: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        self.pattern, self.grid, self.clip_len = pattern, grid, clip_len
        self.batch_size, self.t_max, self.seed = batch_size, t_max, seed
        self.vary_params, self.switch_period, self.sequential = vary_params, switch_period, sequential
        self.start_index, self.rank, self.world_size = start_index, rank, world_size

    @property
    def last_start(self) -> int:
        """Largest clip start time: every frame of every clip has ``t < t_max``."""
        return self.t_max - self.clip_len

    def meta(self, index: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Times ``(n, L)`` int64 and params ``{name: float64 (n,)}`` of global samples ``index`` ``(n,)``."""
        index = torch.as_tensor(index, dtype=torch.int64).reshape(-1)
        offsets = torch.arange(self.clip_len, dtype=torch.int64)
        if self.sequential:
            return index[:, None] + offsets, {}
        names = param_names(self.pattern)
        u = uniforms(self.seed, index, 1 + len(names))
        t0 = torch.floor(u[:, 0] * (self.last_start + 1)).to(torch.int64)
        params = params_from_uniform(self.pattern, u[:, 1:], "train") if self.vary_params else {}
        return t0[:, None] + offsets, params

    def clips(self, index: Tensor) -> Tensor:
        """Clips of global samples ``index`` ``(n,)`` -> ``(n, L, grid, grid)`` float32."""
        times, params = self.meta(index)
        return _clip_frames(self.pattern, self.grid, times, params, self.switch_period)

    def batch_indices(self, k: int) -> Tensor:
        """Global sample indices ``(B,)`` of this rank's ``k``-th batch (sequential: clipped at the end)."""
        first = self.start_index + (k * self.world_size + self.rank) * self.batch_size
        idx = torch.arange(first, first + self.batch_size, dtype=torch.int64)
        return idx[idx <= self.last_start] if self.sequential else idx

    def __iter__(self):
        info = get_worker_info()
        k, step = (info.id, info.num_workers) if info is not None else (0, 1)
        while True:
            idx = self.batch_indices(k)
            if idx.numel() == 0:
                return
            yield self.clips(idx)
            k += step


class FieldClipSet(Dataset):
    """Finite deterministic clip set: times ``(n, L)`` and per-clip parameters ``{name: (n,)}``.

    ``dataset[i]`` is ``(L, grid, grid)``; ``dataset.__getitems__(indices)`` builds a whole batch
    ``(b, L, grid, grid)`` in one ``generate`` call (the DataLoader uses it with ``collate_batch``).
    """

    def __init__(
        self, pattern: str, grid: int, times: Tensor, params: dict[str, Tensor], switch_period: int = 50
    ) -> None:
        self.pattern, self.grid, self.switch_period = pattern, grid, switch_period
        self.times = times.to(torch.int64)
        self.params = {k: v.to(torch.float64) for k, v in params.items()}

    def __len__(self) -> int:
        return self.times.shape[0]

    def __getitems__(self, indices: Sequence[int]) -> Tensor:
        idx = torch.as_tensor(list(indices), dtype=torch.int64)
        params = {k: v[idx] for k, v in self.params.items()}
        return _clip_frames(self.pattern, self.grid, self.times[idx], params, self.switch_period)

    def __getitem__(self, i: int) -> Tensor:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} clips")
        return self.__getitems__([i % len(self)])[0]


def collate_batch(batch: Tensor | Sequence[Tensor]) -> Tensor:
    """Collate for ``FieldClipSet``: a batch from ``__getitems__`` passes through; a list is stacked."""
    return batch if isinstance(batch, Tensor) else torch.stack(list(batch))


def heldout_clip_set(
    pattern: str, grid: int, clip_len: int, n: int, t_lo: int, t_hi: int, seed: int, switch_period: int = 50
) -> FieldClipSet:
    """``n`` streams with ``heldout`` parameters and start times ``t0 ~ U{t_lo, ..., t_hi - 1}`` (seeded)."""
    g = torch.Generator().manual_seed(seed)
    params = sample_params(pattern, n, "heldout", g)
    t0 = torch.randint(t_lo, t_hi, (n,), generator=g, dtype=torch.int64)
    times = t0[:, None] + torch.arange(clip_len, dtype=torch.int64)
    return FieldClipSet(pattern, grid, times, params, switch_period)


def reference_clip_set(
    pattern: str, grid: int, clip_len: int, n: int, t0: int, switch_period: int = 50
) -> FieldClipSet:
    """The seed's protocol: default parameters, ``n`` consecutive clips starting at ``t0, t0 + 1, ...``."""
    times = t0 + torch.arange(n, dtype=torch.int64)[:, None] + torch.arange(clip_len, dtype=torch.int64)
    return FieldClipSet(pattern, grid, times, {}, switch_period)
