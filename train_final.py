#!/usr/bin/env python
"""Retrain a cell from scratch: a search's genotype (--genotype) or a published one (--arch NAME, --arch list).
``python train_final.py --help`` lists every flag."""
import sys

from darts.cli import run_main, setup_logging
from darts.config import FinalConfig, parse_config
from darts.final_run import run_final


def list_archs() -> None:
    """Print the zoo: name, reported CIFAR-10 test error, paper."""
    print(f"{'name':16s} {'error':>7s}  paper")
    from darts.zoo import ZOO

    for name, entry in ZOO.items():
        err = f"{entry.cifar_error:.2f}%" if entry.cifar_error is not None else "-"
        print(f"{name:16s} {err:>7s}  {entry.paper}")


def main(argv=None) -> int:
    cfg, given = parse_config(FinalConfig, argv, description=__doc__)
    setup_logging()
    if cfg.arch == "list":
        return run_main(list_archs)
    return run_main(lambda: run_final(cfg, given))


if __name__ == "__main__":
    sys.exit(main())
