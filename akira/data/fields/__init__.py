"""Synthetic 2D fields: 11 pattern generators (pure, vectorized over time), their parameter table, and
``FieldsDataModule`` (imported lazily, so the generators do not pull in Lightning)."""

from akira.data.fields.params import PARAMS, PATTERNS, default_params, sample_params
from akira.data.fields.patterns import generate

__all__ = ["PARAMS", "PATTERNS", "FieldsDataModule", "default_params", "generate", "sample_params"]


def __getattr__(name: str):
    if name == "FieldsDataModule":
        from akira.data.fields.datamodule import FieldsDataModule

        return FieldsDataModule
    raise AttributeError(f"module 'akira.data.fields' has no attribute {name!r}")
