"""Search spaces (``--space``): which cell graph, primitives, search network, genotype format and discrete network
a search runs over. One file per space: ``darts`` is the DARTS CNN space (Liu et al., ICLR 2019,
:mod:`darts.spaces.darts`), ``nb201`` the NAS-Bench-201 cell (Dong & Yang, ICLR 2020, :mod:`darts.spaces.nb201`).
Add your own by subclassing :class:`SearchSpace` in a file of yours, decorated with :func:`register_space`.
"""
from __future__ import annotations

from .base import (SPACES, SearchSpace, genotype_from_dict, get_space, list_spaces, load_any_genotype,
                   register_space, space_of_format)
from .darts import DartsSpace, SearchCell, Supernet  # noqa: E402  (registers "darts")
from .nb201 import NB201_PRIMITIVES, NB201Genotype, NB201Space, NB201Supernet  # noqa: E402  (registers "nb201")


def default_primitives(space: str) -> tuple[str, ...]:
    """The space's own ordered op names (the columns of α when ``--primitives`` is not given)."""
    return tuple(SPACES.get(space).primitives)


def check_space_primitives(space: str, primitives) -> tuple[str, ...]:
    """Validate ``primitives`` for ``space`` (registered, distinct ops the space allows); returns them as a tuple."""
    return SPACES.get(space)().check_primitives(primitives)


__all__ = ["SPACES", "SearchSpace", "register_space", "get_space", "list_spaces", "space_of_format",
           "genotype_from_dict", "load_any_genotype", "default_primitives", "check_space_primitives", "DartsSpace",
           "Supernet", "SearchCell", "NB201Space", "NB201Supernet", "NB201Genotype", "NB201_PRIMITIVES"]
