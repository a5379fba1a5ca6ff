"""What the LM's Triton kernels (`band_mlp_kernel`, `pair_attention_kernel`) share: the guarded import and the
launch helpers. Triton ships with CUDA builds of torch; the CPU wheel has none (`available()` is then False)."""
from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = tl = None


def available() -> bool:
    return triton is not None


def interpreted() -> bool:
    """Whether Triton kernels run on the CPU interpreter (``TRITON_INTERPRET=1``, as `triton.jit` decides): they then
    take CPU tensors and run no PTX."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def pow2(n: int, lo: int = 16) -> int:
    """Smallest power of two >= n (and >= lo, the smallest `tl.dot` dimension): a block size covering n."""
    return max(lo, 1 << (int(n) - 1).bit_length())


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) of two Python ints, for launch grids (Triton's own `cdiv` is a jitted function: slow to call from
    the host on every launch)."""
    return -(-a // b)


def dot_precision(x: torch.Tensor) -> str:
    """`tl.dot` input precision for inputs of x's dtype: fp32 runs exact ("ieee", not TF32)."""
    return "ieee" if x.dtype == torch.float32 else "tf32"


def _spec(a) -> object:
    """What Triton specialises a kernel argument on: a tensor's dtype, device and 16-byte alignment; an int's
    value 1, divisibility by 16 and 32-bit range; other values (floats, strings) by type. (Runs for every argument
    of every launch: kept to cheap calls.)"""
    if isinstance(a, torch.Tensor):
        return a.dtype, a.get_device(), not a.data_ptr() & 15
    if type(a) is int:
        return a == 1, not a & 15, -2147483648 <= a < 2147483648
    return type(a)


class CachedLaunch:
    """``CachedLaunch(kernel)(grid, *args, **meta)`` = ``kernel[grid](*args, **meta)`` with less host time.

    Triton's launch path binds the arguments, builds a string cache key and checks globals on every call (~30 us of
    host time per launch measured on an H200 host; the fused band MLP launches 54 kernels per training step). The
    first call per specialisation (`_spec` of every argument, and the compile-time arguments) goes through it and
    keeps the compiled kernel it returns; later calls launch that kernel directly. Under the CPU interpreter, or
    with ``AKIRA_TRITON_CACHED_LAUNCH=0``, every call takes Triton's path."""

    def __init__(self, kernel):
        self.kernel = kernel
        params = getattr(kernel, "params", [])   # (the interpreter's functions have none)
        self.constexprs = [p.name for p in params if p.is_constexpr]
        if [p.is_constexpr for p in params] != sorted(p.is_constexpr for p in params):
            raise ValueError(f"CachedLaunch: {kernel}: its compile-time arguments must come after all others")
        self.compiled: dict = {}

    def __call__(self, grid: tuple[int, ...], *args, **meta) -> None:
        if interpreted() or os.environ.get("AKIRA_TRITON_CACHED_LAUNCH") == "0":
            self.kernel[grid](*args, **meta)
            return
        key = (tuple(map(_spec, args)), tuple(meta.items()))
        compiled = self.compiled.get(key)
        if compiled is None:
            self.compiled[key] = self.kernel[grid](*args, **meta)
            return
        grid = (*grid, 1, 1)[:3]
        compiled[grid](*args, *(meta[name] for name in self.constexprs))
