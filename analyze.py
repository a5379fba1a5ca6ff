"""Analyse trained LM checkpoints: `python analyze.py analysis=<capture|alignment|centroid|collapse|dynamics|compare>
ckpt_a=... [ckpt_b=...] [run_dir=...]`. See README.md ("Analysis")."""
from akira.analysis.config import register_analysis_configs
from akira.analysis.pipeline import analyze
from akira.cli import hydra_entry

if __name__ == "__main__":
    register_analysis_configs()
    hydra_entry("analyze", analyze)
