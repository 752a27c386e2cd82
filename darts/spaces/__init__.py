"""Search spaces: which cell graph, primitives and macro network a search runs over (``--space``).

A space is one module declaring its cell graph, its primitives and its search network (with the interface of
:class:`darts.search.Supernet`), registered here: ``darts`` is the DARTS CNN space (Liu et al., ICLR 2019),
``nb201`` the NAS-Bench-201 cell (Dong & Yang, ICLR 2020, :mod:`darts.spaces.nb201`).
"""
from __future__ import annotations

import torch.nn as nn

from ..errors import ConfigError
from ..ops import DARTS_PRIMITIVES, check_primitives
from .nb201 import NB201_PRIMITIVES, NB201Genotype, NB201Supernet, check_nb201_primitives
from .nb201_bench import open_benchmark

#: the values of ``--space``
SPACES: tuple[str, ...] = ("darts", "nb201")

_DEFAULT_PRIMITIVES = {"darts": DARTS_PRIMITIVES, "nb201": NB201_PRIMITIVES}


def _check_space(space: str) -> None:
    if space not in SPACES:
        raise ConfigError(f"unknown search space {space!r}; choose from {', '.join(SPACES)}")


def default_primitives(space: str) -> tuple[str, ...]:
    """The space's own ordered op names (the columns of α when ``--primitives`` is not given)."""
    _check_space(space)
    return _DEFAULT_PRIMITIVES[space]


def check_space_primitives(space: str, primitives) -> tuple[str, ...]:
    """Validate ``primitives`` for ``space``; returns them as a tuple.

    Every space needs registered, distinct ops; ``nb201`` also needs each to be one of its five ops (the benchmark
    only has cells over those), else :class:`ConfigError`.
    """
    _check_space(space)
    if space == "nb201":
        return check_nb201_primitives(primitives)
    return check_primitives(primitives)


def build_search_model(space: str, *, C: int, num_classes: int, layers: int, nodes: int, stem_multiplier: int,
                       cells_per_stage: int | None, primitives, in_channels: int, kernels: str,
                       method=None) -> nn.Module:
    """The search network of ``space``; each space reads the arguments it has and ignores the others.

    Args:
        C: initial channels.
        num_classes: classifier outputs.
        layers, nodes, stem_multiplier: the DARTS space's cells, intermediate nodes per cell (also the number
            concatenated into the cell output) and stem width factor.
        cells_per_stage: the NB201 space's N (None: the benchmark's 5).
        primitives: the ordered op names (columns of α), checked with :func:`check_space_primitives`.
        in_channels: image channels.
        kernels: ``--kernels`` setting.
        method: a :class:`darts.methods.SearchMethod`, or None for plain DARTS.
    """
    primitives = check_space_primitives(space, primitives)
    if space == "nb201":
        return NB201Supernet(C, num_classes, 5 if cells_per_stage is None else cells_per_stage, primitives,
                             in_channels=in_channels, kernels=kernels, method=method)
    from ..search import Supernet

    return Supernet(C, num_classes, layers, primitives, steps=nodes, multiplier=nodes,
                    stem_multiplier=stem_multiplier, in_channels=in_channels, kernels=kernels, method=method)


__all__ = ["SPACES", "default_primitives", "check_space_primitives", "build_search_model", "NB201_PRIMITIVES",
           "NB201Genotype", "NB201Supernet", "open_benchmark"]
