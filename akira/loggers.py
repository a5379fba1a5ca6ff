"""Build the configured loggers. W&B is imported only when `logger=wandb` is chosen.

W&B: runs offline automatically when no API key is configured (WANDB_API_KEY, `wandb login`'s netrc
entry) unless WANDB_MODE says otherwise; the run id is kept in `<run dir>/wandb_run_id.txt`, so a resumed
run (`ckpt_path=last` in the same run dir) continues the same W&B run. Sync offline runs later with
`wandb sync <run dir>/wandb/offline-run-*`.
"""
from __future__ import annotations

import netrc
import os
import secrets
import string
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

RUN_ID_FILE = "wandb_run_id.txt"


def wandb_api_key_available() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        auth = netrc.netrc(os.environ.get("NETRC")).authenticators("api.wandb.ai")
        return bool(auth and auth[2])
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def build_wandb_logger(project: str, save_dir: str, entity: str | None = None, group: str | None = None,
                       name: str | None = None, job_type: str = "train", tags: list[str] | None = None,
                       notes: str | None = None, offline: bool | None = None, log_model: bool = False,
                       config: dict | None = None):
    """A `WandbLogger` that resumes the run id stored in `save_dir` and goes offline without a key."""
    from pytorch_lightning.loggers import WandbLogger

    if offline is None:
        offline = os.environ.get("WANDB_MODE", "") in ("offline", "dryrun") or not wandb_api_key_available()
    id_file = Path(save_dir) / RUN_ID_FILE
    run_id = id_file.read_text().strip() if id_file.exists() else None
    if run_id is None:
        alphabet = string.ascii_lowercase + string.digits
        run_id = "".join(secrets.choice(alphabet) for _ in range(8))
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        tmp = id_file.with_suffix(".tmp")
        tmp.write_text(run_id)
        os.replace(tmp, id_file)
    return WandbLogger(project=project, entity=entity, group=group, name=name, job_type=job_type,
                       tags=list(tags or []), notes=notes, save_dir=save_dir, offline=offline,
                       log_model=log_model, id=run_id, resume="allow", config=config)


def build_loggers(cfg: DictConfig) -> list[Any]:
    """Instantiate every enabled entry of `cfg.logger` (W&B receives the resolved config)."""
    loggers = []
    for key, node in (cfg.logger or {}).items():
        if node is None:
            continue
        if key == "wandb":
            kwargs = OmegaConf.to_container(node, resolve=True)
            kwargs.pop("_target_")
            kwargs["config"] = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
            loggers.append(build_wandb_logger(**kwargs))
        else:
            loggers.append(instantiate(node, _convert_="all"))
    return loggers


def finish_wandb(exit_code: int) -> None:
    """Finish the active W&B run, if W&B was used at all (never imports wandb otherwise)."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=exit_code)
