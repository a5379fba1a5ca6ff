"""Evaluate a checkpoint on val/test: `python eval.py ckpt_path=<.ckpt> [same overrides as training]`."""
from akira.cli import eval_task, hydra_entry

if __name__ == "__main__":
    hydra_entry("eval", eval_task)
