"""Contiguous token windows from a `(N,)` token memmap: training batches and full-split evaluation.

No padding anywhere: every window is `seq_len + 1` real tokens; `x = w[:, :-1]`, `y = w[:, 1:]`.

Training (`TrainWindows`, an infinite IterableDataset of whole batches, step = global batch index):
- `sampling="random"`: step `s` draws `world_size * batch_size` offsets uniformly in
  `[0, N - seq_len - 1]` from `default_rng([seed, s])`; rank `r` takes rows `r*B:(r+1)*B`. A pure
  function of (seed, step), so a DDP run of W ranks x B equals one process with batch W*B.
- `sampling="chunks"`: epoch `e` uses a phase `p_e` in `[0, (N-1) mod seq_len]` and a permutation of the
  `M = (N-1) // seq_len` chunks starting at `p_e + i*seq_len` (inputs non-overlapping; the last target
  of a chunk is the first input of the next), both from `default_rng([seed, 1, e])`; each global step
  takes the next `world_size * batch_size` chunks (`M // (W*B)` steps per epoch, the few left over are
  seen in other epochs), rank `r` takes rows `r*B:(r+1)*B` — disjoint across ranks, complete per step.
- Resumable: `start_step` (`state_dict()` / `load_state_dict()`); DataLoader workers take steps
  `start + w, start + w + num_workers, ...`, which the DataLoader yields back in step order.

Evaluation (`eval_windows`, `EvalWindows`): windows start at `0, S, 2S, ...` (stride `S = eval_stride`,
default `seq_len`: non-overlapping), the last one moved left to end exactly at the last token. Window
0 scores all `seq_len` targets; window k scores targets `j >= score_from[k]` only (`seq_len - S` for a
regular window), so every token at positions `1..N-1` is scored exactly once, with at least
`seq_len - S` tokens of context after the first window. Batches are `(x, y, mask)`, `mask` bool.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

SAMPLING = ("random", "chunks")


def _positive(name: str, value, minimum: int = 1) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}={value!r}: expected an integer >= {minimum}")
    return int(value)


def _check_rank(rank: int, world_size: int) -> tuple[int, int]:
    world_size = _positive("world_size", world_size)
    if not isinstance(rank, (int, np.integer)) or not 0 <= rank < world_size:
        raise ValueError(f"rank={rank!r}: expected an integer in [0, world_size={world_size})")
    return int(rank), world_size


class _Tokens:
    """A `(N,)` token array; a memmap is pickled as (file, dtype, offset, N) and reopened lazily."""

    def __init__(self, tokens):
        if hasattr(tokens, "tokens") and hasattr(tokens, "bin_path"):  # a TokenCache
            tokens = tokens.tokens
        arr = np.asarray(tokens) if not isinstance(tokens, np.memmap) else tokens
        if arr.ndim != 1:
            raise ValueError(f"tokens: expected a 1-D array, got shape {arr.shape}")
        self.n = int(arr.shape[0])
        self._arr = arr
        self._file = (str(tokens.filename), arr.dtype.str, int(tokens.offset)) if isinstance(tokens, np.memmap) else None

    @property
    def array(self) -> np.ndarray:
        if self._arr is None:
            path, dtype, offset = self._file
            self._arr = np.memmap(path, dtype=np.dtype(dtype), mode="r", offset=offset, shape=(self.n,))
        return self._arr

    def __getstate__(self):
        state = dict(self.__dict__)
        if self._file is not None:
            state["_arr"] = None
        return state

    def gather(self, starts: np.ndarray, length: int) -> np.ndarray:
        """`(K, length)` windows `tokens[s : s + length]` for each start (one vectorized gather)."""
        return self.array[starts[:, None] + np.arange(length, dtype=np.int64)[None, :]]


def _split_xy(w: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, L+1) tokens -> x, y int64 (K, L), contiguous."""
    return torch.from_numpy(w[:, :-1].astype(np.int64)), torch.from_numpy(w[:, 1:].astype(np.int64))


class TrainWindows(IterableDataset):
    """Infinite stream of training batches `(x, y)`, int64 `(batch_size, seq_len)` (module doc)."""

    def __init__(self, tokens, seq_len: int, batch_size: int, sampling: str = "random", seed: int = 0,
                 rank: int = 0, world_size: int = 1, start_step: int = 0):
        super().__init__()
        self.tokens = _Tokens(tokens)
        self.seq_len = _positive("data.seq_len", seq_len)
        self.batch_size = _positive("data.batch_size", batch_size)
        if sampling not in SAMPLING:
            raise ValueError(f"data.sampling={sampling!r}: expected one of {', '.join(SAMPLING)}")
        self.sampling = sampling
        self.seed = _positive("seed", seed, 0)
        self.rank, self.world_size = _check_rank(rank, world_size)
        self.start_step = _positive("start_step", start_step, 0)
        n, L = self.tokens.n, self.seq_len + 1
        if n < L:
            raise ValueError(f"data.seq_len={seq_len}: the training split has only {n} tokens (needs >= seq_len + 1)")
        self.global_batch = self.batch_size * self.world_size
        self.n_chunks = (n - 1) // self.seq_len
        self.steps_per_epoch = self.n_chunks // self.global_batch
        if sampling == "chunks" and self.steps_per_epoch == 0:
            raise ValueError(
                f"data.batch_size={batch_size}: {self.n_chunks} chunks of seq_len {seq_len} in the training split "
                f"cannot fill one global batch of {self.global_batch} (batch_size x world_size)"
            )
        self._epoch_cache: tuple[int, int, np.ndarray] | None = None

    def _epoch(self, epoch: int) -> tuple[int, np.ndarray]:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            rng = np.random.default_rng([self.seed, 1, epoch])
            slack = (self.tokens.n - 1) - self.n_chunks * self.seq_len
            phase = int(rng.integers(0, slack + 1))
            self._epoch_cache = (epoch, phase, rng.permutation(self.n_chunks))
        return self._epoch_cache[1], self._epoch_cache[2]

    def global_offsets(self, step: int) -> np.ndarray:
        """Window starts of global step `step` for all ranks, `(world_size * batch_size,)` int64."""
        if self.sampling == "random":
            rng = np.random.default_rng([self.seed, int(step)])
            return rng.integers(0, self.tokens.n - self.seq_len, size=self.global_batch, dtype=np.int64)
        epoch, k = divmod(int(step), self.steps_per_epoch)
        phase, perm = self._epoch(epoch)
        return phase + perm[k * self.global_batch:(k + 1) * self.global_batch].astype(np.int64) * self.seq_len

    def offsets(self, step: int) -> np.ndarray:
        """This rank's window starts at `step`, `(batch_size,)`."""
        return self.global_offsets(step)[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`(x, y)` int64 `(batch_size, seq_len)` for this rank at `step`."""
        return _split_xy(self.tokens.gather(self.offsets(step), self.seq_len + 1))

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        step = self.start_step + wid
        while True:
            yield self.batch(step)
            step += nw

    def state_dict(self) -> dict:
        return {"step": self.start_step, "seed": self.seed, "sampling": self.sampling}

    def load_state_dict(self, state: dict) -> None:
        self.start_step = _positive("state_dict['step']", state["step"], 0)


def eval_windows(n_tokens: int, seq_len: int, stride: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Window starts and first scored target index for a full split: `(starts, score_from)`, `(K,)` int64."""
    seq_len = _positive("data.seq_len", seq_len)
    stride = seq_len if stride is None else stride
    if not isinstance(stride, (int, np.integer)) or not 1 <= stride <= seq_len:
        raise ValueError(f"data.eval_stride={stride!r}: expected an integer in [1, seq_len={seq_len}] or null")
    last = n_tokens - 1 - seq_len
    if last < 0:
        raise ValueError(f"data.seq_len={seq_len}: the split has only {n_tokens} tokens (needs >= seq_len + 1)")
    k = 1 + math.ceil(last / stride)
    starts = np.minimum(np.arange(k, dtype=np.int64) * stride, last)
    score_from = np.zeros(k, dtype=np.int64)
    score_from[1:] = starts[:-1] + seq_len - starts[1:]
    return starts, score_from


class EvalWindows(IterableDataset):
    """Batches `(x, y, mask)` covering a split (module doc); `x, y` int64 and `mask` bool `(b, seq_len)`.

    Global batch `i` holds windows `[i*B, (i+1)*B)`; rank `r` takes batches `i = r, r + W, ...` (disjoint,
    complete), DataLoader workers split those further. Every rank gets the same number of batches, at least one
    (Lightning stops on a rank without any): where the split runs out, a rank's last batch is a padding batch
    (real windows, mask all False), which adds nothing to the metrics. `len()` is this rank's number of batches.
    """

    def __init__(self, tokens, seq_len: int, batch_size: int, stride: int | None = None,
                 rank: int = 0, world_size: int = 1):
        super().__init__()
        self.tokens = _Tokens(tokens)
        self.seq_len = _positive("data.seq_len", seq_len)
        self.batch_size = _positive("data.eval_batch_size", batch_size)
        self.rank, self.world_size = _check_rank(rank, world_size)
        self.starts, self.score_from = eval_windows(self.tokens.n, seq_len, stride)
        self.n_batches = math.ceil(len(self.starts) / self.batch_size)
        per_rank = max(1, math.ceil(self.n_batches / self.world_size))
        self.my_batches = [i if i < self.n_batches else -1     # -1: padding
                           for i in range(self.rank, per_rank * self.world_size, self.world_size)]

    def __len__(self) -> int:
        return len(self.my_batches)

    def batch(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Global batch i, or for i = -1 a padding batch (the first batch's windows, nothing scored)."""
        sl = slice(max(i, 0) * self.batch_size, (max(i, 0) + 1) * self.batch_size)
        x, y = _split_xy(self.tokens.gather(self.starts[sl], self.seq_len + 1))
        mask = torch.arange(self.seq_len)[None, :] >= torch.from_numpy(self.score_from[sl])[:, None]
        return x, y, mask & (i >= 0)

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        for i in self.my_batches[wid::nw]:
            yield self.batch(i)
