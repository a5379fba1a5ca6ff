"""What the LM's Triton kernels (`band_mlp_kernel`, `pair_attention_kernel`) share: the guarded import and the
launch helpers. Triton ships with CUDA builds of torch; the CPU wheel has none (`available()` is then False)."""
from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = tl = None


def available() -> bool:
    return triton is not None


def pow2(n: int, lo: int = 16) -> int:
    """Smallest power of two >= n (and >= lo, the smallest `tl.dot` dimension): a block size covering n."""
    return max(lo, 1 << (int(n) - 1).bit_length())


def dot_precision(x: torch.Tensor) -> str:
    """`tl.dot` input precision for inputs of x's dtype: fp32 runs exact ("ieee", not TF32)."""
    return "ieee" if x.dtype == torch.float32 else "tf32"
