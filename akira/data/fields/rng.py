"""Counter-based uniforms: ``uniforms(seed, index, k)`` is a pure function of ``(seed, index)``.

Used to make training sample ``i`` of a stream a deterministic function of ``(seed, i)``, independent of
batch size, worker count, rank and resume point. The hash is Wellons' ``lowbias32`` evaluated in int64
with 16-bit split multiplications, so no intermediate overflows.
"""

from __future__ import annotations

import torch
from torch import Tensor

_M32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def _mul32(x: Tensor, c: int) -> Tensor:
    """``(x * c) mod 2**32`` for int64 ``x`` in [0, 2**32) and ``c < 2**32``, without int64 overflow."""
    lo, hi = x & 0xFFFF, x >> 16
    return (lo * c + (((hi * c) & 0xFFFF) << 16)) & _M32


def hash32(x: Tensor) -> Tensor:
    """``lowbias32`` of int64 ``x`` (only its low 32 bits are used) -> int64 in [0, 2**32). Elementwise."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def uniforms(seed: int, index: Tensor, k: int) -> Tensor:
    """``k`` independent uniforms in [0, 1) per entry of int64 ``index`` ``(n,)`` -> float64 ``(n, k)``."""
    index = index.to(torch.int64)
    s = hash32(torch.tensor([seed & _M32, (seed >> 32) & _M32], dtype=torch.int64))
    h = hash32(hash32((index & _M32) ^ s[0]) ^ hash32((index >> 32) ^ s[1]))
    j = torch.arange(k, dtype=torch.int64) * _GOLDEN + 1
    u = hash32(hash32(h[:, None] + j) ^ s[0])
    return u.to(torch.float64) / 2.0**32
