"""Hydra entry points with one-line errors and meaningful exit codes.

Exit codes: 0 success, 2 bad configuration (compose or build time), 1 failed run, 130 interrupted.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130


class RunFailed(RuntimeError):
    """A run failed after it started; the traceback is in the run's log file."""


class StopBeforeRun(BaseException):
    """Raised by a Hydra callback (akira.rundir.RunDirGuard) to stop before Hydra runs the job: Hydra turns a
    callback's `Exception` into a warning and carries on, so the error travels in this `BaseException` and
    `hydra_entry` reports `error` as if the job had raised it."""

    def __init__(self, error: BaseException):
        super().__init__(error)
        self.error = error


def _is_config_error(exc: BaseException) -> bool:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from akira.config import ConfigError

    chain = [exc, exc.__cause__, exc.__context__]
    return any(isinstance(e, (ConfigError, HydraException, OmegaConfBaseException)) for e in chain if e) or (
        isinstance(exc, AssertionError) and "Unexpected type for root" in str(exc)
    )


def train_task(cfg):
    """`akira.run.train`, imported only once Hydra has composed and type-checked the config: torch and Lightning
    take seconds to import, and a config error found while composing (unknown key or option, wrong type) needs
    neither, so it is reported in ~2 s instead of ~9 (2-core machine). Module-level, so launchers that pickle the
    task function (submitit) pickle it by reference."""
    from akira.run import train

    return train(cfg)


def eval_task(cfg):
    """`akira.run.evaluate`, imported late as `train_task`."""
    from akira.run import evaluate

    return evaluate(cfg)


def hydra_entry(config_name: str, fn: Callable) -> None:
    """Run `fn(cfg)` under `@hydra.main` with config `config_name`; exit with a one-line error."""
    import hydra

    from akira.config import format_error, register_configs

    os.environ.setdefault("AKIRA_ROOT", str(ROOT))
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let exceptions reach us; we print one line ourselves
    register_configs()

    failures: list[BaseException] = []

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)
    def _main(cfg):
        # Job errors are kept here instead of propagating into Hydra (which would print its own
        # "Error executing job" line, and in a sequential multirun stop the remaining jobs).
        try:
            return fn(cfg)
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001
            failures.append(exc)
            if isinstance(exc, KeyboardInterrupt):
                raise
            return None

    try:
        try:
            _main()
        except StopBeforeRun as stop:
            raise stop.error from None
        if failures:
            raise failures[0]
    except KeyboardInterrupt:
        print("akira: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except RunFailed as exc:
        more = f" (and {len(failures) - 1} more failed job(s))" if len(failures) > 1 else ""
        print(f"akira: error: {exc}{more}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    except Exception as exc:  # noqa: BLE001 - the one place that turns exceptions into exit codes
        if _is_config_error(exc):
            print(f"akira: config error: {format_error(exc)}", file=sys.stderr)
            sys.exit(EXIT_CONFIG)
        print(f"akira: error: {type(exc).__name__}: {format_error(exc)}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
