"""Structured-config schemas of `analyze.py` (`conf/analyze.yaml`, `conf/analysis/*.yaml`).

`register_analysis_configs()` stores ``analyze_schema`` and ``schema/analysis/<name>`` in Hydra's
ConfigStore, so an unknown key or a wrong type fails when the config is composed, as for train.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore

from akira.config.logging import LoggersConfig
from akira.config.paths import PathsConfig


class Site(str, Enum):
    mlp = "mlp"
    resid = "resid"


class ProbeKind(str, Enum):
    random = "random"
    text = "text"


class StoreDtype(str, Enum):
    float16 = "float16"
    float32 = "float32"


def _sites() -> list:
    return [Site.mlp, Site.resid]


@dataclass
class ProbeConfig:
    """Probe sets: ``text`` = the first n_seqs windows of seq_len tokens of a split of the data; ``random`` =
    uniform token ids in [random_low, random_high) (null: the tokenizer's vocabulary when the data is known,
    else the model's vocab_size), seeded by ``seed``."""

    kinds: list[ProbeKind] = field(default_factory=lambda: [ProbeKind.random, ProbeKind.text])
    n_seqs: int = 256
    seq_len: int = 64
    batch_size: int = 16
    split: str = "valid"
    random_low: int = 0
    random_high: int | None = None
    dtype: StoreDtype = StoreDtype.float16  # storage of captured activations


@dataclass
class AQConfig:
    """AQ candidates: max-correlation vs K random rotations, pooled leave-one-out null, BH at ``fdr``."""

    fdr: float = 0.05
    n_rotations: int = 32
    abs_corr: bool = True
    null_replicates: int = 8


@dataclass
class CaptureConfig:
    kind: str = "capture"
    sites: list[Site] = field(default_factory=_sites)
    layers: list[int] | None = None


@dataclass
class AlignmentConfig:
    kind: str = "alignment"
    sites: list[Site] = field(default_factory=_sites)
    layers: list[int] | None = None
    bands: list[int] | None = None      # per-band statistics for these bands (null: all)
    aq: AQConfig = field(default_factory=AQConfig)
    heldout_frac: float = 0.5              # Procrustes: fit on the first 1 - heldout_frac of the sequences
    standardize: bool = True               # Procrustes on z-scored units
    min_rows_per_unit: float = 2.0         # fit rows >= this x units of the widest layer
    chunk_seqs: int = 32


@dataclass
class CentroidConfig:
    kind: str = "centroid"
    sites: list[Site] = field(default_factory=_sites)
    layers: list[int] | None = None
    bands: list[int] | None = None
    low_bands: list[int] = field(default_factory=lambda: [0, 1, 2])
    aq: AQConfig = field(default_factory=AQConfig)   # AQ status of the units when ckpt_b is given
    n_permutations: int = 2000
    n_bootstrap: int = 1000
    min_rows_per_unit: float = 2.0
    chunk_seqs: int = 32


@dataclass
class CollapseConfig:
    kind: str = "collapse"
    n_draws: int = 32                      # Monte-Carlo draws of the head-synchronisation chance level
    lens_chunk_rows: int = 128             # rows per logit-lens chunk: memory ~ 3 x (L + 1) x rows x vocab x 4 B
    n_bootstrap: int = 1000
    batch_size: int | None = None       # null: probe.batch_size


@dataclass
class GrokkingConfig:
    drop_frac: float = 0.5
    window_frac: float = 0.15
    plateau_frac: float = 0.2
    plateau_tol: float = 0.2
    train_done: float = 0.8
    smooth_window: int = 3
    min_drop: float = 1e-3                 # absolute floor on the drop (nats)


@dataclass
class DynamicsConfig:
    kind: str = "dynamics"
    bands: list[int] | None = None
    rtol: float = 0.1
    atol: float = 1e-4                     # tolerance floor (delta-loss nats; decades for the update ratio)
    normalize_by_lr: bool = True           # analyse update_ratio / lr/band_<i> (the schedule is not instability)
    window: int = 5
    tail_frac: float = 0.2
    grokking: GrokkingConfig = field(default_factory=GrokkingConfig)
    n_permutations: int = 5000


@dataclass
class ArmConfig:
    """One side of a comparison: two seeds (ckpt_b optional: no alignment) and the run dir (metrics.csv;
    null: the run dir of ckpt_a)."""

    ckpt_a: str | None = None
    ckpt_b: str | None = None
    run_dir: str | None = None


@dataclass
class CompareConfig:
    kind: str = "compare"
    baseline: ArmConfig = field(default_factory=ArmConfig)
    akira: ArmConfig = field(default_factory=ArmConfig)
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig)
    centroid: CentroidConfig = field(default_factory=CentroidConfig)
    collapse: CollapseConfig = field(default_factory=CollapseConfig)
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)


@dataclass
class AnalyzeConfig:
    """Top level of analyze.py. ckpt_a / ckpt_b: the model (two seeds for alignment); run_dir: a training
    run (metrics.csv) for dynamics; data: a text data option (null: taken from ckpt_a's run dir)."""

    analysis: Any = None
    data: Any = None
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    logger: LoggersConfig = field(default_factory=LoggersConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    ckpt_a: str | None = None
    ckpt_b: str | None = None
    run_dir: str | None = None
    device: str = "cpu"                    # cpu | cuda | auto
    task_name: str = "analyze"
    tags: list[str] = field(default_factory=list)
    seed: int = 0


ANALYSIS_SCHEMAS = {"capture": CaptureConfig, "alignment": AlignmentConfig, "centroid": CentroidConfig,
                    "collapse": CollapseConfig, "dynamics": DynamicsConfig, "compare": CompareConfig}

_registered = False


def register_analysis_configs() -> None:
    """Store ``analyze_schema`` and ``schema/analysis/<name>`` (idempotent)."""
    global _registered
    if _registered:
        return
    cs = ConfigStore.instance()
    cs.store(name="analyze_schema", node=AnalyzeConfig)
    for name, node in ANALYSIS_SCHEMAS.items():
        cs.store(group="schema/analysis", name=name, node=node)
    _registered = True
