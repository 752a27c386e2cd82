#!/usr/bin/env python
"""Retrain a cell from scratch: ``darts-forge retrain`` (``python train_final.py --help`` lists every flag)."""
import sys

from darts.cli import retrain_main

if __name__ == "__main__":
    sys.exit(retrain_main(prog="train_final.py"))
