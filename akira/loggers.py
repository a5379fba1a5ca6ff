"""Build the configured loggers. W&B is imported only when `logger=wandb` is chosen.

W&B: runs offline automatically when no API key is configured (WANDB_API_KEY, `wandb login`'s netrc
entry) unless WANDB_MODE says otherwise; the run id is kept in `<run dir>/wandb_run_id.txt`, so a resumed
run (`ckpt_path=last` in the same run dir) continues the same W&B run. Sync offline runs later with
`wandb sync <run dir>/wandb/offline-run-*`.

Unset `group` / `name` are filled in (`wandb_run_identity`): group = the sweep's name for a job of a sweep
(gpu_pool sets AKIRA_SWEEP_DIR; Hydra's in-process launchers run in MULTIRUN mode), else the task name; name
= the job directory's name in a sweep (`<num>_<overrides>`), else the overrides, else the task name; tags
gain the task name, `seed:<n>` and the sweep's name. At the end the run's summary receives metrics.json and
a loss-curve plot joins the frame panels as media.
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

from akira.atomic import atomic_write_bytes
from akira.config.nodes import target_and_kwargs

RUN_ID_FILE = "wandb_run_id.txt"
_active_save_dir: Path | None = None  # the run dir of the W&B logger built in this process


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

    global _active_save_dir
    _active_save_dir = Path(save_dir)
    if offline is None:
        offline = os.environ.get("WANDB_MODE", "") in ("offline", "dryrun") or not wandb_api_key_available()
    id_file = Path(save_dir) / RUN_ID_FILE
    run_id = id_file.read_text().strip() if id_file.exists() else None
    if run_id is None:
        alphabet = string.ascii_lowercase + string.digits
        run_id = "".join(secrets.choice(alphabet) for _ in range(8))
        atomic_write_bytes(id_file, run_id.encode())
    return WandbLogger(project=project, entity=entity, group=group, name=name, job_type=job_type,
                       tags=list(tags or []), notes=notes, save_dir=save_dir, offline=offline,
                       log_model=log_model, id=run_id, resume="allow", config=config)


def _hydra_runtime() -> dict[str, Any]:
    """Mode, output dir, sweep dir and override_dirname of the current Hydra job (empty outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return {}
    out: dict[str, Any] = {}
    for key, path in (("mode", "mode"), ("output_dir", "runtime.output_dir"), ("sweep_dir", "sweep.dir"),
                      ("override_dirname", "job.override_dirname"), ("overrides", "overrides.task")):
        try:
            out[key] = OmegaConf.select(hc, path, throw_on_resolution_failure=False)
        except Exception:  # noqa: BLE001 - an unresolvable optional field is simply absent
            out[key] = None
    return out


def wandb_run_identity(cfg: DictConfig, group: str | None = None, name: str | None = None,
                       tags: list[str] | None = None) -> dict[str, Any]:
    """Group, name and tags of a run's W&B entry (explicit values win; see the module docstring)."""
    from akira.launch.sweep import SWEEP_DIR_ENV, sweep_name

    runtime = _hydra_runtime()
    sweep_dir = os.environ.get(SWEEP_DIR_ENV)
    if not sweep_dir and str(runtime.get("mode") or "").endswith("MULTIRUN"):
        sweep_dir = runtime.get("sweep_dir")
    sweep = sweep_name(sweep_dir) if sweep_dir else None
    task_name = str(cfg.get("task_name") or "train")
    if group is None:
        group = sweep or task_name
    if name is None:
        if sweep and runtime.get("output_dir"):
            name = Path(str(runtime["output_dir"])).name
        else:
            name = runtime.get("override_dirname") or task_name
    extra = [task_name, f"seed:{cfg.get('seed')}"] + ([f"sweep:{sweep}"] if sweep else [])
    merged = list(dict.fromkeys([*(tags or []), *extra]))
    return {"group": group, "name": name, "tags": merged, "sweep": sweep,
            "overrides": list(runtime.get("overrides") or []), "run_dir": runtime.get("output_dir")}


def build_loggers(cfg: DictConfig) -> list[Any]:
    """Instantiate every enabled entry of `cfg.logger` (W&B receives the resolved config)."""
    loggers = []
    for key, node in (cfg.logger or {}).items():
        if node is None:
            continue
        if key == "wandb":
            _, kwargs = target_and_kwargs(node)
            identity = wandb_run_identity(cfg, kwargs.get("group"), kwargs.get("name"), kwargs.get("tags"))
            kwargs.update(group=identity["group"], name=identity["name"], tags=identity["tags"])
            kwargs["config"] = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
            kwargs["config"]["launch"] = {k: identity[k] for k in ("sweep", "overrides", "run_dir")} | {
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
            loggers.append(build_wandb_logger(**kwargs))
        else:
            loggers.append(instantiate(node, _convert_="all"))
    return loggers


def _summarize(wandb, run_dir: Path) -> None:
    """metrics.json into the run summary; a loss-curve plot (from metrics.csv) as media."""
    import json
    import logging

    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        wandb.run.summary.update({k: v for k, v in metrics.items() if isinstance(v, (int, float, str))})
    except (OSError, ValueError):
        pass
    try:
        from akira.report import plot_run_curves

        png = plot_run_curves(run_dir, run_dir / "media" / "loss_curves.png")
        if png is not None:
            wandb.log({"plots/loss_curves": wandb.Image(str(png))}, commit=True)
    except Exception as exc:  # noqa: BLE001 - media must never fail a finished run
        logging.getLogger("akira").warning("W&B: could not log the loss-curve plot: %s", exc)


def finish_wandb(exit_code: int) -> None:
    """Finish the active W&B run, if W&B was used at all (never imports wandb otherwise); on success
    its summary gets metrics.json and a loss-curve plot."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        if exit_code == 0 and _active_save_dir is not None:
            _summarize(wandb, _active_save_dir)
        wandb.finish(exit_code=exit_code)
