"""Semantic checks that types alone cannot express; each failure names the key and the allowed range."""
from __future__ import annotations

import logging

from omegaconf import DictConfig, OmegaConf

from akira.config.errors import ConfigError
from akira.config.nodes import FRAMEWORK_KEYS, target_and_kwargs

log = logging.getLogger("akira")


def _at_least(cfg: DictConfig, key: str, minimum: int) -> None:
    value = OmegaConf.select(cfg, key)
    if value is not None and value < minimum:
        raise ConfigError(key, f"must be >= {minimum} (got {value})")


def _check_precision_and_devices(cfg: DictConfig) -> None:
    """trainer.precision and trainer.devices: the values Lightning accepts, checked before anything is built."""
    import typing

    from pytorch_lightning.trainer.connectors.accelerator_connector import _PRECISION_INPUT

    allowed = [str(v) for lit in typing.get_args(_PRECISION_INPUT) for v in typing.get_args(lit)]
    precision = OmegaConf.select(cfg, "trainer.precision")
    if precision is not None and str(precision) not in allowed:
        raise ConfigError("trainer.precision", f"must be one of {', '.join(dict.fromkeys(allowed))}, got {precision!r}")
    devices = OmegaConf.select(cfg, "trainer.devices")
    if isinstance(devices, int) and not isinstance(devices, bool) and devices < 1 and devices != -1:
        raise ConfigError("trainer.devices", f"must be >= 1, -1 (all), 'auto' or a list of ids, got {devices}")


def _check_lm_model(cfg: DictConfig) -> None:
    """The LM's own value checks (`LMConfig`: band widths, heads, choices such as model.wormhole_gate) at compose
    time, before the data is read; the vocabulary comes from the data later, so a placeholder stands in for null."""
    target, kwargs = target_and_kwargs(cfg.model, FRAMEWORK_KEYS)
    if target != "akira.models.lm.Transformer":
        return
    from akira.models.lm import LMConfig

    kwargs.pop("vocab_pad_multiple", None)
    if kwargs.get("vocab_size") is None:
        kwargs["vocab_size"] = 1
    try:
        LMConfig(**kwargs)
    except TypeError as exc:
        raise ConfigError("model", str(exc)) from exc
    except ValueError as exc:
        msg = str(exc)
        raise ConfigError(None if msg.startswith("model.") else "model", msg) from exc


def validate_config(cfg: DictConfig, model_choice: str | None = None) -> None:
    """Checks on the composed config before anything heavy is built (`model_choice`: the model= option)."""
    required = cfg.get("requires_model")
    if required and model_choice and model_choice != required:
        raise ConfigError("model", f"this experiment ({cfg.task_name}) needs model={required}, got model={model_choice}")
    if cfg.data is None:
        raise ConfigError("data", "no data config selected (choose e.g. data=fields)")
    if cfg.model is None:
        raise ConfigError("model", "no model config selected (choose e.g. model=convlstm)")
    if cfg.model.get("kind") != cfg.data.get("kind"):
        raise ConfigError("model", f"a '{cfg.model.get('kind')}' model cannot run on '{cfg.data.get('kind')}' data "
                          f"(data={cfg.data.get('kind')}); pick a model of that kind")
    _at_least(cfg, "trainer.max_steps", -1)
    _at_least(cfg, "data.batch_size", 1)
    _at_least(cfg, "optim.warmup_steps", 0)
    _check_precision_and_devices(cfg)
    warmup, max_steps = OmegaConf.select(cfg, "optim.warmup_steps"), OmegaConf.select(cfg, "trainer.max_steps")
    if OmegaConf.select(cfg, "optim.schedule") == "cosine" and max_steps is not None:
        if max_steps < 1:
            raise ConfigError("trainer.max_steps", f"must be >= 1 for the cosine schedule (its length), got {max_steps}")
        if warmup is not None and warmup > max_steps:
            raise ConfigError("optim.warmup_steps", f"must be <= trainer.max_steps = {max_steps} for the cosine "
                              f"schedule (got {warmup})")
    if cfg.data.kind == "fields":
        _at_least(cfg, "data.grid", 8)
        _at_least(cfg, "data.history", 2)
        _at_least(cfg, "data.horizon", 1)
        horizons = list(cfg.task.rollout_horizons)
        if not horizons or min(horizons) < 1:
            raise ConfigError("task.rollout_horizons", f"must be positive integers (got {horizons})")
        if max(horizons) > cfg.data.horizon:
            raise ConfigError("data.horizon", f"must be >= max(task.rollout_horizons) = {max(horizons)} "
                              f"(got {cfg.data.horizon})")
    if cfg.data.kind == "text":
        _check_lm_model(cfg)
        _warn_generic_optimizer(cfg, model_choice)
    if cfg.ckpt_path not in (None, "", "last") and not isinstance(cfg.ckpt_path, str):
        raise ConfigError("ckpt_path", "must be null, 'last' or a path to a .ckpt file")


def _warn_generic_optimizer(cfg: DictConfig, model_choice: str | None) -> None:
    """A language model with train.yaml's generic optimizer (Adam, constant LR, no warmup) is allowed but rarely
    meant: the LM recipe (AdamW, warmup + cosine, weight decay on matrices) comes with the LM experiments."""
    optim = cfg.optim
    if optim.name == "adam" and optim.schedule == "constant" and optim.warmup_steps == 0:
        log.warning("model=%s trains with the generic optimizer (Adam, lr %g, constant, no warmup, no weight decay); "
                    "the language-model recipe of the arms (AdamW, warmup + cosine) comes with experiment=lm_baseline "
                    "or an ablation_* experiment (or set optim.* yourself)", model_choice or "?", optim.lr)


def validate_model_data(cfg: DictConfig, model) -> None:
    """Checks that need the built model (past frames it needs, its bands vs the LR table)."""
    if cfg.optim.get("band_lrs") is not None:
        from akira.tasks.optim import resolve_band_lrs

        try:
            resolve_band_lrs(OmegaConf.to_container(cfg.optim, resolve=True)["band_lrs"],
                             int(getattr(model, "n_bands", 0) or 0))
        except ValueError as exc:
            raise ConfigError(None, str(exc)) from exc
    if cfg.data.kind == "fields":
        context = int(getattr(model, "context_frames", 1))
        if context > cfg.data.history:
            raise ConfigError("data.history", f"model needs {context} past frames; set data.history >= {context} "
                              f"(got {cfg.data.history})")
