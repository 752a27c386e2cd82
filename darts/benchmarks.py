"""Tabular benchmarks: NAS-Bench-201's accuracies of every cell, looked up instead of trained.

:class:`NB201Table` reads a CSV of the layout of the 12-epoch table NAS-Bench-201 publishes (one row per cell of the
space, by benchmark index and cell string; see ``README.md``), any such file a user points it at::

    table = darts.benchmarks.NB201Table("nb201_12epoch.csv")
    table.query("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
    # NB201Record(index=1, arch='|nor_conv_3x3~0|...', accuracy={'cifar10': {'test': 88.22, 'val': 82.83}, ...})
"""
from .spaces.nb201_bench import NB201_DATASETS, SPLITS, NB201Record, NB201Table, metric_key

__all__ = ["NB201Table", "NB201Record", "NB201_DATASETS", "SPLITS", "metric_key"]
