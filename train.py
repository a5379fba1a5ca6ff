"""Train (and test) a model: `python train.py [group=option ...] [key=value ...]`. See README.md."""
from akira.cli import hydra_entry
from akira.run import train

if __name__ == "__main__":
    hydra_entry("train", train)
