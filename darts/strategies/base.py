"""The seam every multi-trial strategy plugs into: it proposes cells (``ask``), is told their scores (``tell``), and
can be saved and restored between any two evaluations.

A strategy works on a cell's *encoding*, a vector of choices with a number of options at each position (the space
declares it: :class:`CellEncoding`), so one strategy serves every space. Its options are a dataclass, as a method's.
"""
from __future__ import annotations

import random
from typing import ClassVar, Sequence

from ..errors import ConfigError
from ..options import OptionsOwner
from ..registry import Registry

STRATEGIES = Registry("search strategy", flag="--strategy",
                      hint="Add your own: subclass darts.strategies.Strategy in a file of yours, decorate it with "
                           "@register_strategy and load it with --plugin FILE.")


class CellEncoding:
    """A space's cells as vectors of choices: position ``i`` takes one of ``sizes[i]`` values.

    Spaces build one (:meth:`darts.spaces.SearchSpace.encoding`) with their ``decode`` (vector -> genotype) and
    ``encode`` (genotype -> vector). ``groups`` partitions the positions (NAS-Bench-201: by the node an edge ends
    in), for mutations that first pick a group, as the authors' regularised evolution picks a node, then an edge.
    """

    def __init__(self, sizes: Sequence[int], decode, encode, describe: str = "", groups=None):
        if not sizes or any(int(s) < 1 for s in sizes):
            raise ConfigError(f"a cell encoding needs at least one position with a choice, got {list(sizes)}")
        self.sizes = tuple(int(s) for s in sizes)
        self.groups = tuple(tuple(g) for g in groups) if groups else tuple((i,) for i in range(len(self.sizes)))
        if sorted(i for g in self.groups for i in g) != list(range(len(self.sizes))):
            raise ConfigError(f"encoding groups {self.groups} do not partition positions 0..{len(self.sizes) - 1}")
        self._decode, self._encode, self.describe = decode, encode, describe

    def decode(self, x: Sequence[int]):
        return self._decode(list(x))

    def encode(self, genotype) -> list[int]:
        return list(self._encode(genotype))

    def random(self, rng: random.Random) -> list[int]:
        """A uniformly random cell."""
        return [rng.randrange(s) for s in self.sizes]

    def mutate(self, x: Sequence[int], rng: random.Random) -> list[int]:
        """``x`` with one position changed to another value: a random group, a random position in it, a random
        other value (AutoDL-Projects' ``mutate_arch_func``: node, then edge, then an op unlike the current one).
        Positions with a single value never change."""
        groups = [[i for i in g if self.sizes[i] > 1] for g in self.groups]
        groups = [g for g in groups if g]
        y = list(x)
        if not groups:
            return y
        i = rng.choice(rng.choice(groups))
        y[i] = rng.choice([v for v in range(self.sizes[i]) if v != x[i]])
        return y

    def neighbours(self, x: Sequence[int]) -> list[list[int]]:
        """Every cell that differs from ``x`` at exactly one position."""
        return [list(x[:i]) + [v] + list(x[i + 1:]) for i, s in enumerate(self.sizes) for v in range(s) if v != x[i]]

    def size(self) -> int:
        n = 1
        for s in self.sizes:
            n *= s
        return n


class Strategy(OptionsOwner):
    """A multi-trial search strategy. Construct with its options as keywords or an ``Options`` instance.

    Class attributes a subclass sets: ``name`` (the ``--strategy`` value), ``paper``, ``Options`` (a dataclass of
    :func:`darts.options.option` fields) and ``flag_prefix``. It implements :meth:`ask` and :meth:`tell`, and keeps
    everything it needs to continue in :meth:`state_dict` (plain Python values and tensors), so that a resumed run
    proposes what an uninterrupted one would.
    """

    kind: ClassVar[str] = "strategy"

    def begin(self, encoding: CellEncoding, seed: int) -> None:
        """Start a search of the cells ``encoding`` describes; the strategy's random numbers come from ``seed``."""
        self.encoding = encoding
        self.rng = random.Random(seed)

    def budget(self, evals: int) -> int:
        """The number of evaluations to run when ``--budget-evals`` is ``evals`` (an exhaustive strategy stops at
        the size of the space)."""
        return evals

    def ask(self) -> list[int]:
        """The next cell to evaluate (an encoding vector)."""
        raise NotImplementedError

    def tell(self, x: list[int], score: float) -> None:
        """The score of a cell :meth:`ask` proposed (higher is better; ``-inf`` for a cell that cannot be scored)."""

    def state_dict(self) -> dict:
        return {"rng": _rng_state(self.rng)}

    def load_state_dict(self, state: dict) -> None:
        self.rng.setstate(_rng_tuple(state["rng"]))

    def describe(self) -> str:
        return self.name


def register_strategy(cls):
    """Class decorator: make ``cls`` (a :class:`Strategy` subclass) available as ``--strategy cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, Strategy)) or not cls.name:
        raise ConfigError(f"@register_strategy takes a Strategy subclass with a name, got {cls!r}")
    STRATEGIES.register(cls.name, cls, origin=cls.__module__)
    return cls


def _rng_state(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _rng_tuple(state) -> tuple:
    version, internal, gauss = state
    return int(version), tuple(int(v) for v in internal), gauss
