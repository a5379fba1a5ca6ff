"""Train (and test) a model: `python train.py [group=option ...] [key=value ...]`. See README.md."""
from akira.cli import hydra_entry, train_task

if __name__ == "__main__":
    hydra_entry("train", train_task)
