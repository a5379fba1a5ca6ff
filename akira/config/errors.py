"""One-line error messages for configuration problems (compose time and build time)."""
from __future__ import annotations

import dataclasses


class ConfigError(ValueError):
    """A configuration value is invalid. The message names the key and the allowed values/range."""

    def __init__(self, key: str | None, message: str):
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


def _allowed_keys(object_type) -> str:
    if object_type is not None and dataclasses.is_dataclass(object_type):
        names = [f.name for f in dataclasses.fields(object_type) if f.name != "_target_"]
        return ", ".join(names)
    return ""


def _omegaconf_line(err) -> str:
    """Format an OmegaConf error (ConfigKeyError, ValidationError, ...) as one line."""
    full_key = getattr(err, "full_key", None) or "<config>"
    msg = str(getattr(err, "msg", None) or err).strip().splitlines()[0]
    object_type = getattr(err, "object_type", None)
    if "not in" in msg and ("Key '" in msg or "Key " in msg):
        allowed = _allowed_keys(object_type)
        return f"{full_key}: unknown key" + (f" (allowed keys: {allowed})" if allowed else "")
    return f"{full_key}: {msg}"


def format_error(exc: BaseException) -> str:
    """Reduce a Hydra/OmegaConf/akira exception to one clear line naming the key."""
    from hydra.errors import MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(exc, ConfigError):
        return str(exc)
    if isinstance(exc, MissingConfigException):
        first = str(exc).strip().splitlines()[0]
        options = getattr(exc, "options", None)
        if options:
            group = (getattr(exc, "missing_cfg_file", "") or "").rsplit("/", 1)[0]
            return f"{first.split(': ', 1)[-1]}; allowed values for '{group}': {', '.join(sorted(options))}"
        return first
    cause = exc.__cause__ or exc.__context__
    for candidate in (exc, cause):
        if isinstance(candidate, OmegaConfBaseException) and getattr(candidate, "full_key", None) is not None:
            return _omegaconf_line(candidate)
    if isinstance(exc, AssertionError) and "Unexpected type for root" in str(exc):
        import sys

        keys = [a.split("=", 1)[0] for a in sys.argv[1:] if "=" in a and "." in a.split("=", 1)[0]
                and not a.startswith(("hydra", "+", "~"))]
        which = (f"{keys[0]!r}" if len(keys) == 1 else f"one of {', '.join(repr(k) for k in keys)}") if keys \
            else "an override"
        return (f"cannot set {which}: a parent node is null in this config (Hydra does not say which; e.g. "
                "logger.wandb.* needs logger=wandb); select the group option that defines it first")
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__
