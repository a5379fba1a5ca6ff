"""Probe sets: the first windows of a text split, or uniform random token ids; and where the text comes from.

The text source is the ``data`` config given to analyze.py, else the data config saved by Hydra in the
checkpoint's run directory (`<run>/.hydra/config.yaml`), so a trained model is probed with its own tokenizer.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import run_dir_of


def random_probe(n_seqs: int, seq_len: int, high: int, low: int = 0, seed: int = 0) -> np.ndarray:
    """(n_seqs, seq_len) int64 ids uniform in [low, high)."""
    if not 0 <= low < high:
        raise ValueError(f"probe.random_low/random_high: need 0 <= low < high, got [{low}, {high})")
    return np.random.default_rng(seed).integers(low, high, size=(n_seqs, seq_len), dtype=np.int64)


def text_probe(tokens: np.ndarray, n_seqs: int, seq_len: int, split: str = "valid") -> np.ndarray:
    """The first n_seqs non-overlapping windows of seq_len tokens of a token stream (memmap) -> (N, S) int64."""
    need = n_seqs * seq_len
    if tokens.shape[0] < need:
        raise ValueError(f"probe.n_seqs: the {split!r} split has {tokens.shape[0]} tokens, fewer than "
                         f"n_seqs x seq_len = {n_seqs} x {seq_len} = {need}")
    return np.asarray(tokens[:need], dtype=np.int64).reshape(n_seqs, seq_len)


def data_config_for(data: dict | None, ckpt: str | None) -> dict | None:
    """The text data config: ``data`` if given, else the one in ckpt's run dir (resolved); None if neither."""
    if data:
        return dict(data)
    if not ckpt:
        return None
    run = run_dir_of(ckpt)
    if run is None:
        return None
    from omegaconf import OmegaConf

    saved = OmegaConf.load(run / ".hydra" / "config.yaml")
    if saved.get("data") is None:
        return None
    return OmegaConf.to_container(saved.data, resolve=True, enum_to_str=True)


class TextSource:
    """Token stream of one split and the tokenizer's vocabulary size, built from a text data config."""

    def __init__(self, data: dict[str, Any], split: str = "valid"):
        if data.get("kind") not in (None, "text"):
            raise ValueError(f"data: the text probe needs a text data option, got kind={data.get('kind')!r}")
        from akira.data.text import TextDataModule

        kwargs = {k: v for k, v in data.items() if k not in ("_target_", "kind")}
        try:
            self.datamodule = TextDataModule(**kwargs)
            self.tokens = self.datamodule.cache(split).tokens
            self.vocab_size = int(self.datamodule.vocab_size)
        except (TypeError, ValueError, FileNotFoundError, KeyError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ValueError(f"data: cannot load the {split!r} split for the text probe: {first}") from exc
        self.split = split
        self.description = {k: data.get(k) for k in ("source", "variant", "tokenizer", "train_path", "valid_path",
                                                     "test_path", "local_dir")}


def describe(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())
