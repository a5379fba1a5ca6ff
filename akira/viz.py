"""Frame panels for next-frame prediction (the reference's 2x2 figure) and atomic PNG writing.

matplotlib is imported lazily and only its object API is used (``Figure`` + ``FigureCanvasAgg``), so no
pyplot global state is touched and any backend setting is irrelevant.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from akira.atomic import atomic_open

__all__ = ["frame_panel", "save_png"]


def _to_image(name: str, value: Any) -> np.ndarray:
    """A 2D tensor or array ``(H, W)`` -> float32 numpy array on the CPU."""
    if hasattr(value, "detach"):  # torch.Tensor (any device / dtype, maybe requiring grad)
        value = value.detach().float().cpu().numpy()
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2D frame of shape (H, W); got shape {arr.shape}")
    return arr


def frame_panel(current: Any, target: Any, prediction: Any, title: str = "", *, dpi: int = 120) -> np.ndarray:
    """Draw Current / Target t+1 / Prediction (magma, 0..1) and |error| (viridis, 0..1) with colourbars.

    Args:
        current, target, prediction: frames ``(H, W)`` (torch tensors or numpy arrays), values in [0, 1].
        title: figure suptitle (e.g. step and metrics).
        dpi: resolution; the figure is 8 x 8 inches as in the reference (960 x 960 pixels at dpi 120).

    Returns:
        RGB image, ``numpy.uint8`` array of shape ``(H_img, W_img, 3)``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cur = _to_image("current", current)
    tgt = _to_image("target", target)
    pred = _to_image("prediction", prediction)
    if not (cur.shape == tgt.shape == pred.shape):
        raise ValueError(
            f"current, target and prediction must have the same shape; got {cur.shape}, {tgt.shape}, {pred.shape}"
        )
    if isinstance(dpi, bool) or not isinstance(dpi, int) or dpi < 1:
        raise ValueError(f"dpi must be a positive integer; got {dpi!r}")
    err = np.clip(np.abs(pred - tgt), 0.0, 1.0)

    fig = Figure(figsize=(8, 8), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    panels = [
        (cur, "Current", "magma"),
        (tgt, "Target t+1", "magma"),
        (pred, "Prediction", "magma"),
        (err, "|error|", "viridis"),
    ]
    for ax, (img, name, cmap) in zip(axes.flat, panels):
        im = ax.imshow(img, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_png(array: np.ndarray, path: str | os.PathLike) -> str:
    """Write an image ``(H, W, 3)`` / ``(H, W, 4)`` uint8 (or ``(H, W)`` grey) to ``path`` as PNG, atomically.

    The PNG is written to a temporary file in the same directory and moved into place with ``os.replace``,
    so readers never see a partial file. Parent directories are created. Returns the path as a string.
    """
    from matplotlib.image import imsave

    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        raise ValueError(f"array must have dtype uint8; got {arr.dtype}")
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ValueError(f"array must have shape (H, W), (H, W, 3) or (H, W, 4); got {arr.shape}")
    path = os.fspath(path)
    with atomic_open(path, "wb") as f:
        if arr.ndim == 2:
            imsave(f, arr, format="png", cmap="gray", vmin=0, vmax=255)
        else:
            imsave(f, arr, format="png")
    return path
