"""Sweep report: `python report.py <sweep dir> [--out DIR]` (same as `python -m akira.report`)."""
import sys

from akira.report import main

if __name__ == "__main__":
    sys.exit(main())
