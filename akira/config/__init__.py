"""Structured-config schemas registered in Hydra's ConfigStore.

Every config group option in `conf/` starts its defaults list with one of these schemas
(`/schema/<group>/<name>@_here_`), and `train.yaml`/`eval.yaml` start with `train_schema`/
`eval_schema`, so an unknown key or a wrong type fails when the config is composed.
"""
from __future__ import annotations

from hydra.core.config_store import ConfigStore

from akira.config.data import FieldsDataConfig, TextDataConfig
from akira.config.errors import ConfigError, format_error
from akira.config.models import (
    ConvLSTMConfig,
    CopyLastConfig,
    LinearExtrapolationConfig,
    LMModelConfig,
    MLP2DConfig,
    Spectral2DConfig,
)
from akira.config.run import EvalConfig, TrainConfig

SCHEMAS = {
    "data": {"fields": FieldsDataConfig, "text": TextDataConfig},
    "model": {
        "copy_last": CopyLastConfig,
        "linear": LinearExtrapolationConfig,
        "mlp2d": MLP2DConfig,
        "convlstm": ConvLSTMConfig,
        "lm": LMModelConfig,
        "spectral2d": Spectral2DConfig,
    },
}

_registered = False
MAX_DIRNAME = 200


def short_dirname(name: str) -> str:
    """A job directory name that fits file-system limits: long override lists are cut and hashed."""
    if len(name.encode()) <= MAX_DIRNAME:
        return name
    import hashlib

    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    return name.encode()[: MAX_DIRNAME - 11].decode(errors="ignore") + "~" + digest


def register_configs() -> None:
    """Register all schemas once (idempotent)."""
    global _registered
    if _registered:
        return
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("akira_dirname", short_dirname, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="eval_schema", node=EvalConfig)
    for group, nodes in SCHEMAS.items():
        for name, node in nodes.items():
            cs.store(group=f"schema/{group}", name=name, node=node)
    _registered = True


__all__ = ["ConfigError", "format_error", "register_configs", "SCHEMAS"]
