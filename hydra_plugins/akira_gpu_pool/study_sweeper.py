"""`hydra/sweeper=study`: the grid sweeper (`grid_sweeper.GridSweeper`: failed jobs do not stop later batches)
for a study defined in config.

A study config selected on the command line (`experiment=sweep_ablations`) can sweep the very group that
selected it (`hydra.sweeper.params.experiment: lm_baseline,ablation_full,...`): the command line's single
choice of a swept group is replaced by the params (Hydra's basic sweeper would let it win), so every job is
exactly `experiment=<arm> seed=<s> <other overrides>`. A comma list on the command line still wins.
Job configs are composed without the study config, so the study pins for them what it decided for the
sweep: the resolved sweep dir (jobs would re-evaluate it with their own `task_name`) and its `hydra/*`
choices (so command-line `hydra.launcher.*` overrides still apply to the jobs' configs).
"""
from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf, open_dict, read_write

from hydra_plugins.akira_gpu_pool.grid_sweeper import GridSweeper


class StudySweeper(GridSweeper):
    def sweep(self, arguments: list[str]) -> Any:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        from akira.launch.sweep import hydra_quote

        assert self.config is not None
        choices = self.config.hydra.runtime.choices
        parser = OverridesParser.create()
        kept = []
        for arg in arguments:
            override = parser.parse_overrides([arg])[0]
            key = override.key_or_group
            replaced = (key in self.params and key in choices and override.package is None
                        and not override.is_sweep_override() and not override.is_delete())
            if not replaced:
                kept.append(arg)
        # command-line hydra.sweeper.* overrides concern this sweep only (they would not compose in a job)
        raw = OmegaConf.to_container(self.config.hydra.overrides.hydra, resolve=False)  # may hold ${...}
        hydra_overrides = [str(o) for o in raw
                           if not parser.parse_overrides([str(o)])[0].key_or_group.startswith(("hydra.sweeper",
                                                                                                "hydra/sweeper"))]
        given = {parser.parse_overrides([o])[0].key_or_group for o in hydra_overrides}
        pins = [f"{group}={choice}" for group, choice in choices.items()
                if group.startswith("hydra/") and group != "hydra/sweeper" and choice is not None and group not in given]
        pins.append(f"hydra.sweep.dir={hydra_quote(str(self.config.hydra.sweep.dir))}")
        with read_write(self.config.hydra), open_dict(self.config.hydra):
            self.config.hydra.overrides.hydra = pins + hydra_overrides
        return super().sweep(kept)
