"""Schema of the `paths/` group."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PathsConfig:
    root_dir: str = "${oc.env:AKIRA_ROOT,.}"
    data_dir: str = "${paths.root_dir}/data"
    log_dir: str = "${paths.root_dir}/outputs"
    output_dir: str = "${hydra:runtime.output_dir}"
    work_dir: str = "${hydra:runtime.cwd}"
