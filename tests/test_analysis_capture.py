"""Checkpoint loading and activation capture (tiny LMs written in the LanguageModelTask checkpoint format)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from akira.analysis import load_lm, read_lm_config
from akira.analysis.capture import (
    ActivationStore,
    activations,
    capture,
    mlp_hidden,
    n_bands,
    seq_chunks,
    unit_bands,
)
from akira.analysis.checkpoint import architecture_mismatch
from akira.analysis.testing import tiny_lm_checkpoint
from akira.models.lm import Transformer, lm_preset

MLPS = ["dense", "band", "dense_split"]


@pytest.mark.parametrize("mlp", MLPS)
def test_load_lm_round_trip(tmp_path, mlp):
    path = tiny_lm_checkpoint(tmp_path / "m.ckpt", seed=3, mlp=mlp, max_seq_len=16)
    torch.manual_seed(3)
    ref = Transformer(lm_preset("tiny", mlp=mlp, max_seq_len=16)).eval()
    model = load_lm(path)
    assert not model.training and model.config == ref.config
    idx = torch.randint(0, 128, (2, 16))
    torch.testing.assert_close(model(idx), ref(idx))
    assert read_lm_config(path).mlp == mlp


def test_load_lm_rejects_other_files(tmp_path):
    with pytest.raises(ValueError, match=r"^ckpt_a: checkpoint file not found"):
        load_lm(tmp_path / "nope.ckpt", key="ckpt_a")
    torch.save({"state_dict": {}}, tmp_path / "fields.ckpt")
    with pytest.raises(ValueError, match=r"^ckpt_b: .* is not a language-model checkpoint of this framework"):
        load_lm(tmp_path / "fields.ckpt", key="ckpt_b")
    (tmp_path / "text.ckpt").write_text("hello")
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        load_lm(tmp_path / "text.ckpt")
    bad = torch.load(tiny_lm_checkpoint(tmp_path / "ok.ckpt"), weights_only=False)
    bad["model_class"] = "collections.OrderedDict"
    torch.save(bad, tmp_path / "bad.ckpt")
    with pytest.raises(ValueError, match="not a language model"):
        load_lm(tmp_path / "bad.ckpt")


def test_architecture_mismatch_ignores_training_only_fields():
    a = lm_preset("tiny")
    assert architecture_mismatch(a, a.replace(dropout=0.3, init_std=0.01)) == []
    diff = architecture_mismatch(a, a.replace(mlp="band", d_model=64))
    assert diff == ["model.mlp: 'dense' vs 'band'"]


@pytest.mark.parametrize("mlp", MLPS)
def test_mlp_hidden_is_the_true_hidden_layer(mlp):
    torch.manual_seed(0)
    model = Transformer(lm_preset("tiny", mlp=mlp)).eval()
    block = model.blocks[1]
    x = torch.randn(2, 5, 64)
    h = mlp_hidden(block.mlp, x)
    assert h.shape[-1] == unit_bands(model, "mlp").size
    if mlp == "dense":
        out = block.mlp.fc2(h)
    elif mlp == "band":
        b2 = torch.cat(list(block.mlp.b2))
        out = F.linear(h, torch.block_diag(*block.mlp.w2), b2)
    else:
        _, _, w2, b2 = block.mlp.dense_weights()
        out = F.linear(h, w2, b2)
    torch.testing.assert_close(out, block.mlp(x), atol=1e-5, rtol=1e-5)


def test_unit_bands():
    band = Transformer(lm_preset("tiny", mlp="band"))
    assert np.bincount(unit_bands(band, "mlp")).tolist() == list(band.band_hidden)
    assert np.bincount(unit_bands(band, "resid")).tolist() == [16, 12, 10, 8, 8, 6, 4]
    dense = Transformer(lm_preset("tiny"))                 # pseudo-bands: proportional hidden groups
    assert np.bincount(unit_bands(dense, "mlp")).tolist() == [64, 48, 40, 32, 32, 24, 16]
    assert n_bands(dense) == 7
    single = Transformer(lm_preset("tiny", band_widths=(8, 8)))    # widths do not tile d_model: one band
    assert n_bands(single) == 1 and set(unit_bands(single, "mlp").tolist()) == {0}
    with pytest.raises(ValueError, match="analysis.sites"):
        unit_bands(band, "attn")


def test_capture_streams_exact_activations_and_reuses_the_store(tmp_path):
    torch.manual_seed(0)
    model = Transformer(lm_preset("tiny", mlp="band", max_seq_len=16)).eval()
    tokens = np.random.default_rng(0).integers(0, 128, (7, 16))
    store = capture(model, tokens, tmp_path / "s", ["mlp", "resid"], [0, 1], batch_size=3, dtype="float32")
    ref = activations(model, torch.from_numpy(tokens), ["mlp", "resid"], [0, 1])
    hidden = model.forward_hidden(torch.from_numpy(tokens))
    for layer in (0, 1):
        np.testing.assert_allclose(store.load("mlp", layer), ref[("mlp", layer)].numpy(), atol=1e-6)
        np.testing.assert_allclose(store.load("resid", layer), hidden[layer + 1].numpy(), atol=1e-5)
    assert store.load("mlp", 0).shape == (7, 16, 256) and store.bands("resid").size == 64
    assert store.meta["banded"] and store.meta["n_bands"] == 7
    stamp = os.path.getmtime(tmp_path / "s" / "mlp_L0.npy")
    again = capture(model, tokens, tmp_path / "s", ["mlp", "resid"], [0, 1], batch_size=3, dtype="float32")
    assert os.path.getmtime(tmp_path / "s" / "mlp_L0.npy") == stamp and again.n_seqs == 7
    only = capture(model, tokens, tmp_path / "m", ["mlp"], [0], batch_size=4)       # stops after layer 0's MLP
    assert only.load("mlp", 0).dtype == np.float16
    with pytest.raises(ValueError, match="no resid layer 0"):
        only.load("resid", 0)
    assert ActivationStore.try_open(tmp_path / "nothing") is None


def test_seq_chunks_never_leave_a_single_sequence():
    assert seq_chunks(0, 9, 4) == [(0, 4), (4, 9)]
    assert seq_chunks(3, 11, 4) == [(3, 7), (7, 11)]
    assert seq_chunks(0, 2, 8) == [(0, 2)]
