"""Load language models from this framework's Lightning checkpoints (no Hydra, no Lightning needed).

`LanguageModelTask.on_save_checkpoint` stores ``model_config`` (asdict of `LMConfig`) and ``model_class``;
the weights are the ``state_dict`` entries prefixed ``model.``.
"""
from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

import torch

from akira.models.lm import LMConfig, Transformer

# config fields that do not change the function or the shapes of the activations compared across seeds
NON_ARCHITECTURAL = ("dropout", "init_std", "scaled_residual_init", "band_impl", "fused_bf16_gelu",
                     "wormhole_attention", "wormhole_gate")


def _read(path: str | Path, key: str) -> dict[str, Any]:
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise ValueError(f"{key}: checkpoint file not found: {p}")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=False, mmap=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line message
        raise ValueError(f"{key}: {p} is not a readable torch checkpoint ({type(exc).__name__})") from exc
    if not isinstance(ckpt, dict) or not {"state_dict", "model_config", "model_class"} <= set(ckpt):
        raise ValueError(f"{key}: {p} is not a language-model checkpoint of this framework (needs 'state_dict', "
                         "'model_config' and 'model_class', written by LanguageModelTask)")
    return ckpt


def _config(ckpt: dict, key: str) -> LMConfig:
    raw = dict(ckpt["model_config"])
    names = {f.name for f in dataclasses.fields(LMConfig)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ValueError(f"{key}: model_config has keys this version of LMConfig does not know: {unknown}")
    try:
        return LMConfig(**raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{key}: invalid model_config in checkpoint: {exc}") from exc


def read_lm_config(path: str | Path, key: str = "ckpt") -> LMConfig:
    """The `LMConfig` stored in a checkpoint (weights are memory-mapped, not read)."""
    return _config(_read(path, key), key)


def load_lm(path: str | Path, key: str = "ckpt", map_location: str | torch.device = "cpu") -> Transformer:
    """The `Transformer` of a LanguageModelTask checkpoint, weights loaded, in eval mode.

    ``key`` names the config key in error messages (e.g. ``ckpt_a``). Raises ValueError (one line) if the file
    is missing or is not an LM checkpoint of this framework.
    """
    ckpt = _read(path, key)
    module, _, name = str(ckpt["model_class"]).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{key}: model_class {ckpt['model_class']!r} cannot be imported") from exc
    if not (isinstance(cls, type) and issubclass(cls, Transformer)):
        raise ValueError(f"{key}: model_class {ckpt['model_class']!r} is not a language model (akira.models.lm)")
    model = cls(_config(ckpt, key))
    prefix = "model."
    state = {k[len(prefix):].replace("_orig_mod.", ""): v for k, v in ckpt["state_dict"].items()
             if k.startswith(prefix)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{key}: weights do not match model_config (missing {list(missing)[:3]}, "
                         f"unexpected {list(unexpected)[:3]})")
    return model.to(map_location).eval()


def architecture_mismatch(a: LMConfig, b: LMConfig) -> list[str]:
    """Fields (``model.<name>: a vs b``) in which two configs differ, ignoring non-architectural ones."""
    out = []
    for f in dataclasses.fields(LMConfig):
        if f.name in NON_ARCHITECTURAL:
            continue
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if va != vb:
            out.append(f"model.{f.name}: {va!r} vs {vb!r}")
    return out


def run_dir_of(path: str | Path) -> Path | None:
    """The training run directory of a checkpoint (the nearest parent with `.hydra/config.yaml`)."""
    p = Path(str(path)).expanduser().resolve()
    for parent in list(p.parents)[:3]:
        if (parent / ".hydra" / "config.yaml").is_file():
            return parent
    return None
