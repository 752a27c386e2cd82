"""The seam every search space plugs into: what a space declares, and the registry of spaces (``--space``).

A space declares its primitives (the default columns of α), its cell graph and search network (the supernet), its
genotype format (how a discrete cell is written, read and validated), its discrete network (what ``retrain``
trains), and its own options (a dataclass, like a method's). The search and retraining runs call these and never
ask which space runs.
"""
from __future__ import annotations

import json
from typing import ClassVar

import torch.nn as nn

from ..errors import ConfigError, GenotypeError
from ..genotype import read_genotype_file
from ..ops import check_primitives
from ..options import OptionsOwner
from ..registry import Registry

SPACES = Registry("search space", flag="--space",
                  hint="Add your own: subclass darts.spaces.SearchSpace in a file of yours, decorate it with "
                       "@register_space and load it with --plugin FILE.")


class SearchSpace(OptionsOwner):
    """A search space. Construct with its options as keywords or as an ``Options`` instance (validated).

    Class attributes a subclass sets:
        name: the ``--space`` value.
        paper: where the space comes from (for the log and ``--help``).
        primitives: the space's own ordered op names (the columns of α unless ``--primitives`` is given).
        genotype_format: the ``"format"`` of its genotype JSON (``darts-genotype/1``, ``nb201-genotype/1``).
        Options, flag_prefix: its options and their flag prefix, as a method's.
        node_inputs: how many inputs each node of a derived cell keeps (DARTS: 2; None: every edge stays, as in
            NAS-Bench-201), which DARTS-PT's topology pass keeps.
        presets: settings of the space, by scale: ``{"all": {...}, "paper": {...}, "small": {...}}``, keyed by
            option keyword (general ones such as ``weight_decay`` included); a method's presets override them.

    Methods a subclass implements: :meth:`build_supernet`, :meth:`genotype_from_dict`; it may override the others.
    """

    kind: ClassVar[str] = "space"
    primitives: ClassVar[tuple[str, ...]] = ()
    genotype_format: ClassVar[str] = ""
    presets: ClassVar[dict[str, dict]] = {}
    node_inputs: ClassVar[int | None] = None

    def presets_for(self, paper_scale: bool) -> dict:
        """The space's settings at the data set's scale (see ``presets``)."""
        return {**self.presets.get("all", {}), **self.presets.get("paper" if paper_scale else "small", {})}

    # -- the search -------------------------------------------------------------------------------------
    def check_primitives(self, primitives) -> tuple[str, ...]:
        """Validate a search space's op names for this space; returns them as a tuple (:class:`ConfigError`)."""
        return check_primitives(primitives)

    def cell_channels(self, C: int) -> list[int]:
        """The channel counts of the cells' edges for initial channels ``C`` (checked by partial-channel methods)."""
        return [C, 2 * C, 4 * C]

    def check_run(self, cfg, method) -> None:
        """Raise :class:`ConfigError` if this space cannot run the general settings ``cfg`` with ``method``."""

    def build_supernet(self, *, C: int, num_classes: int, in_channels: int, primitives, method,
                       kernels: str = "auto") -> nn.Module:
        """The search network (a :class:`darts.supernet.SupernetBase`) over ``primitives``."""
        raise NotImplementedError

    def describe(self, model) -> str:
        """One line on the supernet for the start-up log."""
        n = sum(p.numel() for p in model.weight_parameters())
        return f"{self.name} supernet, {n} weights"

    def epoch_metrics(self, genotype, dataset: str) -> dict:
        """Extra numbers to log for the genotype derived after an epoch (e.g. a benchmark's accuracy of it)."""
        return {}

    def report(self, genotype, run_dir: str) -> None:
        """Write what the space adds to a finished search's run directory (drawings, comparisons)."""

    # -- genotypes --------------------------------------------------------------------------------------
    def genotype_from_dict(self, d: dict):
        """Build and validate a genotype from its JSON object (:class:`GenotypeError` if malformed)."""
        raise NotImplementedError

    def parse_genotype_text(self, text: str):
        """A genotype from a text form of the space's own (not JSON), or None if ``text`` is not in it."""
        return None

    # -- multi-trial search -----------------------------------------------------------------------------
    def encoding(self, primitives):
        """The space's discrete cells over ``primitives`` as a :class:`darts.strategies.CellEncoding` (what
        ``--strategy`` searches)."""
        raise ConfigError(f"--space {self.name} declares no cell encoding, which multi-trial strategies search")

    def table_score(self, genotype) -> float | None:
        """The benchmark table's score of ``genotype`` (``--evaluator table``), None if the table lacks it;
        called with None first, to raise :class:`ConfigError` if the space has no table to read."""
        raise ConfigError(f"--evaluator table: --space {self.name} has no benchmark table (NAS-Bench-201 has one: "
                          "--space nb201 --nb201-table FILE)")

    def table_description(self) -> str:
        return ""

    # -- costs (darts.costs) ----------------------------------------------------------------------------
    def cost_positions(self, ncfg, image_size: int) -> dict:
        """``{cell type: [[(C, stride, H) of every cell where this α row's edge runs] for every α row]}`` in the
        retraining network of settings ``ncfg`` at ``image_size``: where each op of a cell would run."""
        raise ConfigError(f"--space {self.name} declares no cost positions, which --cost needs")

    def genotype_edges(self, genotype) -> list[tuple[str, int, str]]:
        """``(cell type, α row, op)`` of every edge of ``genotype``."""
        raise ConfigError(f"--space {self.name} does not list a genotype's edges, which --cost needs")

    def empty_genotype(self, primitives):
        """A genotype whose every op is ``none`` (its network is the fixed part of every cell's cost)."""
        raise ConfigError(f"--space {self.name} has no empty genotype, which --cost needs")

    def with_ops(self, genotype, ops):
        """``genotype`` with the ops of its edges (in :meth:`genotype_edges` order) replaced by ``ops``."""
        raise NotImplementedError

    def may_take(self, group: str, row: int, op: str) -> bool:
        """Whether the space's rule lets a derived edge take ``op`` (DARTS: anything but ``none``)."""
        return True

    def cheapest_topology(self, genotype, table):
        """The cheapest cell the space's rule can derive at all (other edges), or None if ops alone decide it."""
        return None

    # -- retraining -------------------------------------------------------------------------------------
    def retrain_presets(self, dataset: str, imagenet_layout: bool = False) -> dict:
        """The retraining protocol of the space's cells on ``dataset``: defaults of :class:`RetrainConfig` fields
        (epochs, optimiser, network size, augmentation) for the options the user leaves out."""
        return {}

    def build_network(self, genotype, cfg, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
        """The discrete network of ``genotype`` for retraining with the settings ``cfg``."""
        raise ConfigError(f"--space {self.name} has no discrete network to retrain its cells with")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options})"


def register_space(cls):
    """Class decorator: make ``cls`` (a :class:`SearchSpace` subclass) available as ``--space cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, SearchSpace)):
        raise ConfigError(f"@register_space takes a SearchSpace subclass, got {cls!r}")
    if not cls.name or not cls.genotype_format:
        raise ConfigError(f"{cls.__name__} needs a `name` and a `genotype_format` to be registered")
    for other, space in SPACES.items():
        if space.genotype_format == cls.genotype_format:
            raise ConfigError(f"{cls.__name__}: genotype format {cls.genotype_format!r} is already space {other!r}'s")
    SPACES.register(cls.name, cls, origin=cls.__module__)
    return cls


def get_space(name: str, **options) -> SearchSpace:
    """An instance of the space ``name`` with ``options`` (unprefixed)."""
    return SPACES.get(name)(**options)


def list_spaces() -> list[str]:
    return SPACES.list()


def space_of_format(fmt) -> type[SearchSpace]:
    """The space whose genotypes have ``"format": fmt``."""
    for _, space in SPACES.items():
        if space.genotype_format == fmt:
            return space
    raise GenotypeError(f"genotype format {fmt!r} belongs to no registered search space (known: "
                        f"{', '.join(s.genotype_format for _, s in SPACES.items())})")


def genotype_from_dict(d, default_space: str = "darts"):
    """``(space, genotype)`` from a genotype's JSON object: its ``format`` names the space (a DARTS genotype of the
    original code has none)."""
    if not isinstance(d, dict):
        raise GenotypeError(f"a genotype must be a JSON object, got {type(d).__name__}")
    space = space_of_format(d["format"]) if "format" in d else SPACES.get(default_space)
    return space(), space().genotype_from_dict(d)


def load_any_genotype(path: str):
    """``(space, genotype)`` from a genotype file of any registered space: its JSON, or a space's own text form
    (the DARTS log text ``Genotype(...)``, a NAS-Bench-201 string). :class:`GenotypeError` names the file."""
    text = read_genotype_file(path)
    try:
        for _, cls in SPACES.items():
            space = cls()
            g = space.parse_genotype_text(text)
            if g is not None:
                return space, g
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise GenotypeError(f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
        except RecursionError:
            raise GenotypeError("JSON nested too deeply") from None
        except ValueError as e:  # e.g. an integer of thousands of digits
            raise GenotypeError(f"not a usable genotype ({str(e).splitlines()[0][:120]})") from None
        return genotype_from_dict(d)
    except GenotypeError as e:
        raise GenotypeError(f"{path}: {e}") from None
