"""The NAS-Bench-201 lookup (Dong & Yang, ICLR 2020): the true test accuracy of a derived cell, through the official
API package when it and the benchmark file are present; otherwise nothing, and nothing fails.
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


#: our data set names -> the benchmark's (it has no entry for the others; CIFAR-10's figures stand in)
_BENCH_DATASETS = {"cifar10": "cifar10", "cifar100": "cifar100"}
_warned: set[str] = set()


def _warn_once(key: str, msg: str, *args) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(msg, *args)


class NB201Benchmark:
    """The trained-architecture table of NAS-Bench-201, through its official API object.

    Args:
        api: a ``nas_201_api.API`` (or a ``nats_bench`` topology-search-space API, which answers the same calls).
    """

    def __init__(self, api):
        self.api = api

    def test_accuracy(self, genotype, dataset: str = "cifar10") -> float | None:
        """Test accuracy (percent) of ``genotype`` (an :class:`NB201Genotype` or its string) after the benchmark's
        200-epoch training on ``dataset``; None, with a warning, if the lookup fails."""
        arch = str(genotype)
        bench = _BENCH_DATASETS.get(dataset)
        if bench is None:
            _warn_once(f"dataset:{dataset}", "NAS-Bench-201 has no data set %r; reporting CIFAR-10 accuracies",
                       dataset)
            bench = "cifar10"
        try:
            index = self.api.query_index_by_arch(arch)
            if index is None or int(index) < 0:
                log.warning("architecture %s is not in the NAS-Bench-201 table", arch)
                return None
            info = self.api.get_more_info(index, bench, hp="200", is_random=False)
            return float(info["test-accuracy"])
        except Exception as e:  # any failure of a third-party lookup must not stop a search
            log.warning("NAS-Bench-201 lookup of %s on %s failed: %s: %s", arch, bench, type(e).__name__, e)
            return None


def _make_api(path: str):
    """The official API on ``path``: ``nas_201_api.API``, else ``nats_bench``'s tss API; None if neither exists."""
    try:
        from nas_201_api import API
    except ImportError:
        pass
    else:
        return API(path, verbose=False)
    try:
        import nats_bench
    except ImportError:
        return None
    return nats_bench.create(path, "tss", fast_mode=True, verbose=False)


def open_benchmark(path: str | None) -> NB201Benchmark | None:
    """The benchmark lookup for the file at ``path``, or None (no path, no API package, or a file it cannot read).

    Nothing here raises: a missing benchmark only means the search runs without the per-epoch test accuracy.
    """
    if path is None:
        return None
    try:
        api = _make_api(path)
    except Exception as e:
        log.warning("could not open the NAS-Bench-201 file %s: %s: %s; continuing without benchmark lookups",
                    path, type(e).__name__, e)
        return None
    if api is None:
        _warn_once("no-api", "neither nas_201_api nor nats_bench is installed; continuing without NAS-Bench-201 "
                   "lookups (pip install nas-bench-201)")
        return None
    return NB201Benchmark(api)
