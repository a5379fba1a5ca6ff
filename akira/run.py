"""Build datamodule, task, callbacks, loggers and Trainer from a composed config; fit; test; write
`run.json` and `metrics.json` into the run directory (DESIGN §3)."""
from __future__ import annotations

import logging
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from akira.checkpoint_io import AtomicCheckpointIO, FinalCheckpoint, save_final_checkpoint
from akira.cli import ROOT, RunFailed
from akira.config import ConfigError
from akira.config.nodes import FRAMEWORK_KEYS, target_and_kwargs
from akira.config.validate import validate_config, validate_model_data
from akira.loggers import build_loggers, finish_wandb
from akira.rundir import guard_run_dir, is_rank_zero_env, keep_earlier_record
from akira.runinfo import keep_metrics_csv, read_json_dict, start_info, write_json_atomic
from akira.tasks.optim import param_group_members, param_group_summary

log = logging.getLogger("akira")


# ------------------------------------------------------------------------------------------ builders
def _kwargs(node: DictConfig) -> tuple[str, dict[str, Any]]:
    return target_and_kwargs(node, FRAMEWORK_KEYS)


def _call(target: str, kwargs: dict[str, Any], group: str):
    """Build `target(**kwargs)`; a ValueError from the constructor is a config error of `group`."""
    try:
        fn = get_object(target)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"{group}._target_", f"cannot import '{target}': {exc}") from exc
    try:
        return fn(**kwargs)
    except TypeError as exc:
        raise ConfigError(group, str(exc)) from exc
    except ValueError as exc:
        msg = str(exc)
        raise ConfigError(None if msg.startswith(f"{group}.") else group, msg) from exc


def build_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    target, kwargs = _kwargs(cfg.data)
    return _call(target, kwargs, "data")


def build_model(cfg: DictConfig, datamodule: pl.LightningDataModule | None = None) -> torch.nn.Module:
    target, kwargs = _kwargs(cfg.model)
    if cfg.model.kind == "text":
        pad = max(1, int(kwargs.pop("vocab_pad_multiple", 1)))
        data_vocab = int(datamodule.vocab_size)
        if kwargs.get("vocab_size") is None:
            kwargs["vocab_size"] = -(-data_vocab // pad) * pad
        elif kwargs["vocab_size"] < data_vocab:
            raise ConfigError("model.vocab_size", f"{kwargs['vocab_size']} is smaller than the tokenizer's "
                              f"vocabulary ({data_vocab}); use null to take it from the data")
        if cfg.data.seq_len > kwargs["max_seq_len"]:
            raise ConfigError("data.seq_len", f"{cfg.data.seq_len} is longer than the position table "
                              f"(model.max_seq_len={kwargs['max_seq_len']})")
    return _call(target, kwargs, "model")


def build_task(cfg: DictConfig, model: torch.nn.Module, datamodule: pl.LightningDataModule) -> pl.LightningModule:
    optim = OmegaConf.to_container(cfg.optim, resolve=True, enum_to_str=True)
    if cfg.data.kind == "fields":
        from akira.tasks.next_frame import NextFrameTask

        return NextFrameTask(
            model, history=cfg.data.history, grid=cfg.data.grid, optim=optim,
            rollout_horizons=list(cfg.task.rollout_horizons), loss_on=str(cfg.task.loss_on.value),
            total_steps=cfg.trainer.max_steps,
            test_protocols=getattr(datamodule, "test_protocols", ("unseen", "reference")))
    if cfg.data.kind == "text":
        from akira.tasks.language_model import LanguageModelTask

        return LanguageModelTask(model, optim=optim, total_steps=cfg.trainer.max_steps,
                                 band_stats_every_n_steps=cfg.task.band_stats_every_n_steps,
                                 band_delta_loss=cfg.task.band_delta_loss)
    raise ConfigError("data.kind", f"unknown data kind '{cfg.data.kind}' (allowed: fields, text)")


def build_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    callbacks = []
    for key, node in (cfg.callbacks or {}).items():
        if node is None or key == "extra":
            continue
        if key == "progress_bar" and not cfg.trainer.enable_progress_bar:
            continue
        callbacks.append(instantiate(node, _convert_="all"))
    for node in (cfg.callbacks.get("extra") or {}).values():
        callbacks.append(instantiate(node, _convert_="all"))
    return callbacks


def build_trainer(cfg: DictConfig, callbacks: list, loggers: list) -> pl.Trainer:
    _, kwargs = _kwargs(cfg.trainer)
    kwargs["plugins"] = [AtomicCheckpointIO()]
    # FinalCheckpoint: the end-of-fit last.ckpt holds the last step's loop state (akira.checkpoint_io)
    return pl.Trainer(callbacks=[*callbacks, FinalCheckpoint()], logger=loggers or False, **kwargs)


def count_params(model: torch.nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    if hasattr(model, "num_parameters"):
        non_embedding = int(model.num_parameters(non_embedding=True))
    else:
        embedding = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
        non_embedding = total - embedding
    return {"total": total, "non_embedding": non_embedding,
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}


# ------------------------------------------------------------------------------------------ helpers
def _output_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def _overrides() -> list[str]:
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return []


def _log_file() -> str:
    try:
        hc = HydraConfig.get()
        return str(Path(hc.runtime.output_dir) / f"{hc.job.name}.log")
    except ValueError:
        return "the run's log file"


def resolve_ckpt_path(cfg: DictConfig, output_dir: Path) -> str | None:
    """`last` -> `<run dir>/checkpoints/last.ckpt` if it exists (else start fresh); a path must exist."""
    if cfg.ckpt_path in (None, ""):
        return None
    if cfg.ckpt_path == "last":
        last = output_dir / "checkpoints" / "last.ckpt"
        if last.exists():
            return str(last)
        log.warning("ckpt_path=last but %s does not exist: starting from scratch", last)
        return None
    path = Path(cfg.ckpt_path).expanduser()
    if not path.is_file():
        raise ConfigError("ckpt_path", f"checkpoint file not found: {path}")
    return str(path)


def _scalar_metrics(trainer: pl.Trainer, prefixes=("train/", "val/", "test", "throughput/", "band/")) -> dict[str, float]:
    out = {}
    for key, value in trainer.callback_metrics.items():
        if key.startswith(prefixes):
            v = float(value.item() if torch.is_tensor(value) else value)
            out[key] = v if math.isfinite(v) else str(v)
    return out


def _throughput(callbacks: list, unit: str) -> dict[str, float]:
    from akira.callbacks.throughput import Throughput

    for cb in callbacks:
        if isinstance(cb, Throughput) and cb.mean_rate() is not None:
            return {f"throughput/{unit}_per_sec": cb.mean_rate(),
                    f"throughput/{unit}_per_sec_per_device": cb.mean_rate() / cb.world_size}
    return {}


def print_table(metrics: dict[str, Any]) -> None:
    """Short final table: the model's test metrics beside the trivial baselines (fields) or ppl (text)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="akira: final metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(metrics):
        if key.startswith(("test", "val/loss", "params_", "train_seconds", "throughput/")):
            value = metrics[key]
            table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
    Console(stderr=False).print(table)


# ------------------------------------------------------------------------------------------ entry points
def _traceback_to_log_file(exc: BaseException) -> None:
    """The full traceback goes to the run's log file only; the console gets one line (akira.cli)."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "run failed", None,
                            (type(exc), exc, exc.__traceback__))
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


class _SigintRecorder:
    """Ctrl-C behaves as by default (KeyboardInterrupt) but is remembered for the run's status; SIGTERM (a
    scheduler's or `kill`'s stop) does the same, so a run stopped outside Lightning's own handlers (data setup,
    between fit and test) is recorded as interrupted instead of being left "running".

    An interrupt can land inside code that swaps KeyboardInterrupt for another error (torch.save's zip writer
    raises a RuntimeError from its `__exit__` when interrupted mid-write); such a run was still interrupted,
    not failed. A no-op outside the main thread, where handlers cannot be installed.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received = False
        self._previous: dict = {}

    def _handler(self, signum, frame) -> None:
        self.received = True
        raise KeyboardInterrupt

    def __enter__(self) -> _SigintRecorder:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)


def _run(cfg: DictConfig, fit: bool) -> dict[str, Any]:
    with _SigintRecorder() as sigint:
        return _run_recording(cfg, fit, sigint)


def _run_recording(cfg: DictConfig, fit: bool, sigint: _SigintRecorder) -> dict[str, Any]:
    output_dir = _output_dir()
    rank_zero = is_rank_zero_env()
    # before anything is written: never overwrite a finished run's record (akira.rundir)
    if rank_zero and not guard_run_dir(output_dir, cfg, fit=fit):
        for kept in keep_earlier_record(output_dir):
            log.info("kept the earlier attempt's record as %s", kept)
    info = start_info(ROOT, output_dir, cfg.seed, _overrides(), cfg.task_name)
    write = (lambda: write_json_atomic(output_dir / "run.json", info)) if rank_zero else (lambda: None)
    write()
    exit_code = 1
    try:
        metrics = _build_and_run(cfg, output_dir, info, fit, write)
        info["status"], exit_code = "completed", 0
        return metrics
    except ConfigError:
        info["status"], exit_code = "config_error", 2
        raise
    except (KeyboardInterrupt, SystemExit) as exc:
        info["status"], exit_code = "interrupted", 130
        if isinstance(exc, KeyboardInterrupt):
            raise
        # Lightning ends a run stopped by SIGTERM (SIGTERMException) or Ctrl-C with SystemExit (code None or
        # 1): the CLI must still exit 130, not 0
        raise KeyboardInterrupt(f"{type(exc).__name__}") from exc
    except Exception as exc:
        _traceback_to_log_file(exc)
        if sigint.received:  # the error is the interrupt's consequence (see _SigintRecorder)
            info["status"], exit_code = "interrupted", 130
            raise KeyboardInterrupt from exc
        info["status"], info["error"] = "failed", f"{type(exc).__name__}: {exc}"
        first = (str(exc).strip().splitlines() or [""])[0]
        raise RunFailed(f"run failed: {type(exc).__name__}: {first} (traceback in {_log_file()})") from exc
    finally:
        info["end_time"], info["exit_code"] = time.strftime("%Y-%m-%dT%H:%M:%S%z"), exit_code
        write()
        finish_wandb(exit_code)


def _model_choice() -> str | None:
    try:
        return HydraConfig.get().runtime.choices.get("model")
    except ValueError:
        return None


def _build_and_run(cfg: DictConfig, output_dir: Path, info: dict, fit: bool, write_info) -> dict[str, Any]:
    validate_config(cfg, model_choice=_model_choice())
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    model = build_model(cfg, datamodule)
    validate_model_data(cfg, model)
    task = build_task(cfg, model, datamodule)
    if cfg.model.get("compile", False):
        model.compile()  # in place: state_dict keys stay free of `_orig_mod.`
    params = count_params(model)
    info["params"] = params
    write_info()

    callbacks = build_callbacks(cfg)
    if is_rank_zero_env():
        keep_metrics_csv(output_dir)   # a resumed or re-entered run: the CSV logger would delete the earlier rows
    loggers = build_loggers(cfg)
    trainer = build_trainer(cfg, callbacks, loggers)
    ckpt_path = resolve_ckpt_path(cfg, output_dir)
    trainable = params["trainable"] > 0
    metrics: dict[str, Any] = {}
    train_seconds = 0.0

    if fit and cfg.train and trainable:
        start = time.perf_counter()
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path)
        train_seconds = time.perf_counter() - start
        if not trainer.fast_dev_run:   # resumable like ModelCheckpoint's step checkpoints (akira.checkpoint_io)
            save_final_checkpoint(trainer, output_dir / "checkpoints" / "last.ckpt")
        metrics.update(_scalar_metrics(trainer))
        groups = [g for opt in trainer.optimizers for g in opt.param_groups]
        info["params"]["groups"] = {k: v for k, v in param_group_summary(groups).items() if k != "total"}
        info["params"]["group_members"] = param_group_members(groups)
        info["resumed_from"] = ckpt_path
        info["global_step"] = trainer.global_step
        write_info()
        test_ckpt = None
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") if trainer.checkpoint_callback else ""
        if best and Path(best).exists():
            test_ckpt = best
            info["tested_checkpoint"] = best
    else:
        test_ckpt = ckpt_path if trainable else None
        if trainable and test_ckpt is None:   # the scores of random weights would pass for the model's
            raise ConfigError("ckpt_path", "evaluating a trainable model needs its checkpoint "
                              "(ckpt_path=/path/to/run/checkpoints/last.ckpt)")
        if test_ckpt is not None:
            info["tested_checkpoint"] = test_ckpt
        trainer.validate(task, datamodule=datamodule, ckpt_path=test_ckpt, verbose=False)
        metrics.update(_scalar_metrics(trainer))
    if cfg.test:
        trainer.test(task, datamodule=datamodule, ckpt_path=test_ckpt, verbose=False)
        metrics.update(_scalar_metrics(trainer, prefixes=("test",)))

    metrics.update(_throughput(callbacks, getattr(task, "throughput_unit", "items")))
    metrics.update({"params_total": params["total"], "params_non_embedding": params["non_embedding"],
                    "train_seconds": train_seconds})
    if ckpt_path is not None and fit:   # a resumed run keeps what earlier attempts measured and this one did not
        earlier = read_json_dict(output_dir / "metrics.json") or {}   # (a resume at max_steps trains nothing)
        metrics = {**earlier, **metrics, "train_seconds": train_seconds + float(earlier.get("train_seconds", 0.0))}
    if trainer.is_global_zero:
        write_json_atomic(output_dir / "metrics.json", metrics)
        print_table(metrics)
    return metrics


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit (unless `train=false` or the model has no parameters), then test; returns metrics.json."""
    return _run(cfg, fit=True)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate `ckpt_path` on validation and test (eval.py)."""
    return _run(cfg, fit=False)
