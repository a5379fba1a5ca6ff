"""Turn a composed config node into a constructor call's pieces."""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

# keys of a model/data/trainer node that the framework reads and the target's constructor does not take
FRAMEWORK_KEYS = ("kind", "compile")


def target_and_kwargs(node: DictConfig, drop: tuple[str, ...] = ()) -> tuple[str, dict[str, Any]]:
    """(``_target_``, the other keys resolved to plain containers, enums as strings), without the keys in
    ``drop`` (framework keys the target does not take)."""
    kwargs = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    target = kwargs.pop("_target_")
    for key in drop:
        kwargs.pop(key, None)
    return target, kwargs
