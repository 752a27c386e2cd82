#!/usr/bin/env python
"""Run a differentiable architecture search: DARTS or a successor (--method), in the DARTS or NAS-Bench-201 space
(--space). ``python train_search.py --help`` lists every flag."""
import sys

from darts.cli import run_main, setup_logging
from darts.config import SearchConfig, parse_config
from darts.search_run import run_search


def main(argv=None) -> int:
    cfg, given = parse_config(SearchConfig, argv, description=__doc__)
    setup_logging()
    return run_main(lambda: run_search(cfg, given))


if __name__ == "__main__":
    sys.exit(main())
