"""NAS-Bench-201 look-ups (Dong & Yang, ICLR 2020): a cell's accuracies from a table of the benchmark
(:class:`NB201Table`, a CSV of every cell), or its true 200-epoch test accuracy through the official API package
when it and the benchmark file are present (:func:`open_benchmark`; otherwise nothing, and nothing fails).
"""
from __future__ import annotations

import csv
import logging
import os
import re
from dataclasses import dataclass, field

from ..errors import DataError

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


# ---------------------------------------------------------------------------------------------------------
# The table

#: the benchmark's data sets, and the column prefix each has in the CSV
NB201_DATASETS = {"cifar10": "cifar10", "cifar100": "cifar100", "ImageNet16-120": "imagenet"}
SPLITS = ("test", "val")


@dataclass(frozen=True)
class NB201Record:
    """One cell of the table: its benchmark ``index``, its string ``arch``, and ``accuracy[dataset][split]`` in %."""

    index: int
    arch: str
    accuracy: dict = field(hash=False)


class NB201Table:
    """NAS-Bench-201 accuracies by cell, from a CSV file.

    The columns (by name, in any order; others are ignored): ``arch`` (the benchmark index), ``cellstr`` (the cell
    string), and ``cifar10-test``, ``cifar10-val``, ``cifar100-test``, ``cifar100-val``, ``imagenet-test``,
    ``imagenet-val`` (accuracies in %; ``imagenet`` is ImageNet16-120). Raises :class:`DataError` naming the file
    and the line for a missing file, missing columns or a malformed row.
    """

    def __init__(self, path: str):
        self.path = path
        if not isinstance(path, str) or not os.path.isfile(path):
            raise DataError(f"NAS-Bench-201 table {path!r} does not exist")
        self._by_arch: dict[str, NB201Record] = {}
        try:
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                need = ["arch", "cellstr"] + [f"{p}-{s}" for p in NB201_DATASETS.values() for s in SPLITS]
                missing = [c for c in need if c not in (reader.fieldnames or [])]
                if missing:
                    raise DataError(f"{path}: not a NAS-Bench-201 table; it lacks the column(s) {', '.join(missing)}")
                for line, row in enumerate(reader, start=2):
                    self._add(row, line)
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise DataError(f"cannot read NAS-Bench-201 table {path}: {e}") from None
        if not self._by_arch:
            raise DataError(f"{path}: the NAS-Bench-201 table has no rows")

    def _add(self, row: dict, line: int) -> None:
        try:
            arch = _check_cell(row["cellstr"])
            acc = {ds: {s: float(row[f"{col}-{s}"]) for s in SPLITS} for ds, col in NB201_DATASETS.items()}
            record = NB201Record(int(row["arch"]), arch, acc)
        except (TypeError, ValueError) as e:
            raise DataError(f"{self.path}, line {line}: {e}") from None
        self._by_arch[arch] = record

    def __len__(self) -> int:
        return len(self._by_arch)

    def __iter__(self):
        return iter(self._by_arch.values())

    def __contains__(self, cell) -> bool:
        return str(cell) in self._by_arch

    def query(self, cell) -> NB201Record | None:
        """The record of ``cell`` (an :class:`NB201Genotype` or its string), or None if the table lacks it."""
        return self._by_arch.get(str(cell))

    def accuracy(self, cell, dataset: str = "cifar10", split: str = "val") -> float | None:
        """The ``split`` accuracy (%) of ``cell`` on ``dataset``, or None if the table lacks the cell."""
        if dataset not in NB201_DATASETS:
            raise DataError(f"NAS-Bench-201 has no data set {dataset!r}; choose from {', '.join(NB201_DATASETS)}")
        if split not in SPLITS:
            raise DataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        record = self.query(cell)
        return None if record is None else record.accuracy[dataset][split]

    def best(self, dataset: str = "cifar10", split: str = "test") -> NB201Record:
        """The record with the highest ``split`` accuracy on ``dataset`` (the table's optimum)."""
        return max(self, key=lambda r: r.accuracy[dataset][split])


def metric_key(dataset: str) -> str:
    """``cifar10`` -> ``cifar10``, ``ImageNet16-120`` -> ``imagenet16_120``: the data set's part of a metric name."""
    return dataset.lower().replace("-", "_")


_CELL = re.compile(r"\|[a-z0-9_]+~0\|\+\|[a-z0-9_]+~0\|[a-z0-9_]+~1\|\+\|[a-z0-9_]+~0\|[a-z0-9_]+~1\|[a-z0-9_]+~2\|")


def _check_cell(text) -> str:
    """A cell string in the benchmark's form (``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``), else ValueError."""
    if not isinstance(text, str) or not _CELL.fullmatch(text.strip()):
        raise ValueError(f"{str(text)[:80]!r} is not a NAS-Bench-201 cell string")
    return text.strip()
