#!/usr/bin/env python
"""Run a differentiable architecture search: ``darts-forge search`` (``python train_search.py --help`` lists every
flag)."""
import sys

from darts.cli import search_main

if __name__ == "__main__":
    sys.exit(search_main(prog="train_search.py"))
