"""Schemas of the `data/` group (one per data option)."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class FieldsMode(str, Enum):
    batch = "batch"
    online = "online"


class Pattern(str, Enum):
    blob = "blob"
    interference = "interference"
    switching = "switching"
    double_slit = "double_slit"
    counter_rotate = "counter_rotate"
    chirp = "chirp"
    phase_jump = "phase_jump"
    noisy_motion = "noisy_motion"
    bifurcation = "bifurcation"
    wave_collision = "wave_collision"
    concentric = "concentric"


@dataclass
class FieldsDataConfig:
    """Synthetic 2D fields: clips of `history + horizon` frames from many independent streams."""

    _target_: str = "akira.data.fields.FieldsDataModule"
    kind: str = "fields"
    pattern: Pattern = Pattern.blob
    grid: int = 32
    history: int = "${oc.select:model.time_depth,8}"  # type: ignore[assignment]  # follows a spectral model's window
    horizon: int = 10
    batch_size: int = 32
    eval_batch_size: int | None = None
    num_workers: int = 0
    mode: FieldsMode = FieldsMode.batch
    train_t_max: int = 10000
    reference_t0: int = 10000
    val_streams: int = 64
    test_streams: int = 128
    switch_period: int = 50
    vary_params: bool = True
    reference_clips: int = 101
    seed: int = "${seed}"  # type: ignore[assignment]


class TextVariant(str, Enum):
    tokens = "tokens"
    raw = "raw"


class Tokenizer(str, Enum):
    gpt2 = "gpt2"
    bpe = "bpe"
    byte = "byte"


class Sampling(str, Enum):
    random = "random"
    chunks = "chunks"


@dataclass
class TextDataConfig:
    """Token streams from a memory-mapped cache; no padding anywhere (akira.data.text)."""

    _target_: str = "akira.data.text.TextDataModule"
    kind: str = "text"
    source: str = "wikitext-103"  # wikitext-103 | wikitext-2 | text
    variant: TextVariant = TextVariant.tokens
    local_dir: str | None = None
    train_path: str | None = None
    valid_path: str | None = None
    test_path: str | None = None
    data_dir: str = "${paths.data_dir}"
    cache_dir: str | None = None
    tokenizer: Tokenizer = Tokenizer.gpt2
    tokenizer_dir: str | None = None
    vocab_size: int | None = None
    bpe_min_frequency: int = 2
    seq_len: int = 512
    batch_size: int = 64
    eval_batch_size: int | None = None
    sampling: Sampling = Sampling.random
    eval_stride: int | None = None
    num_workers: int = 0
    pin_memory: bool = False
    seed: int = "${seed}"  # type: ignore[assignment]
    num_proc: int | None = None
    token_dtype: str = "auto"
    download: bool = True
    lock_timeout: float | None = None
