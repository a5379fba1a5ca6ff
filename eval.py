"""Evaluate a checkpoint on val/test: `python eval.py ckpt_path=<.ckpt> [same overrides as training]`."""
from akira.cli import hydra_entry
from akira.run import evaluate

if __name__ == "__main__":
    hydra_entry("eval", evaluate)
