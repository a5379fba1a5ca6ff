"""Frame panel rendering and atomic PNG writing."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from akira.viz import frame_panel, save_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_frame_panel_shape_dtype_and_content():
    torch.manual_seed(0)
    cur, tgt = torch.rand(12, 12), torch.rand(12, 12)
    pred = torch.rand(12, 12, requires_grad=True)  # tensors needing grad are accepted
    img = frame_panel(cur, tgt, pred, title="step 3")
    assert img.dtype == np.uint8
    assert img.shape == (960, 960, 3)  # 8 x 8 in at dpi 120, as in the reference
    assert img.flags["C_CONTIGUOUS"]
    assert img.std() > 10  # not a blank canvas
    magma_dark = np.array([0, 0, 4])  # magma(0): the image must contain the colormaps' colours
    assert (np.abs(img.reshape(-1, 3).astype(int) - magma_dark).sum(axis=1) < 30).any()


def test_frame_panel_accepts_numpy_and_dpi():
    a = np.linspace(0, 1, 64, dtype=np.float64).reshape(8, 8)
    img = frame_panel(a, a, a[::-1].copy(), dpi=40)
    assert img.shape == (320, 320, 3) and img.dtype == np.uint8


def test_frame_panel_errors_are_clear():
    a = np.zeros((8, 8))
    with pytest.raises(ValueError, match="current must be a 2D frame"):
        frame_panel(np.zeros((1, 8, 8)), a, a)
    with pytest.raises(ValueError, match="same shape"):
        frame_panel(a, a, np.zeros((8, 9)))
    with pytest.raises(ValueError, match="dpi"):
        frame_panel(a, a, a, dpi=0)


def test_save_png_writes_valid_png_atomically(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    path = tmp_path / "media" / "step_00001.png"  # parent is created
    assert save_png(arr, path) == str(path)
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert os.listdir(path.parent) == ["step_00001.png"]  # no temp files left behind
    from matplotlib.image import imread

    back = np.rint(imread(path)[..., :3] * 255).astype(np.uint8)
    assert np.array_equal(back, arr)  # lossless round trip
    save_png(arr[::-1].copy(), path)  # overwrite in place
    assert os.listdir(path.parent) == ["step_00001.png"]


def test_save_png_failure_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    arr = np.zeros((4, 4, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    save_png(arr, path)
    old = path.read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_png(np.full((4, 4, 3), 255, dtype=np.uint8), path)
    assert os.listdir(tmp_path) == ["x.png"]
    assert path.read_bytes() == old


def test_save_png_rejects_bad_arrays(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        save_png(np.zeros((4, 4, 3), dtype=np.float32), tmp_path / "a.png")
    with pytest.raises(ValueError, match="shape"):
        save_png(np.zeros((4, 4, 2), dtype=np.uint8), tmp_path / "a.png")
    assert os.listdir(tmp_path) == []


def test_panel_round_trip_through_save_png(tmp_path):
    img = frame_panel(np.zeros((6, 6)), np.ones((6, 6)), np.full((6, 6), 0.5), dpi=30)
    path = save_png(img, tmp_path / "panel.png")
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
