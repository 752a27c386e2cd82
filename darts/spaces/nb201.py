"""The NAS-Bench-201 search space (Dong & Yang, "NAS-Bench-201: Extending the Scope of Reproducible Neural
Architecture Search", ICLR 2020): its cell graph and genotype string, the search network, and the benchmark lookup.

The cell has 4 nodes: node 0 is the cell input and node ``i`` (1..3) sums one op on every earlier node, so the
cell has 6 edges, in α row order ``1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2``; node 3 is the cell output (Sec. 2.1).
The macro network is the benchmark's: a 3x3 conv stem, three stages of N cells joined by two residual reduction
blocks (C -> 2C -> 4C channels), BN-ReLU, global pooling and a linear classifier. Every cell shares one α.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn as nn

from ..errors import ConfigError, GenotypeError
from ..genotype import read_genotype_file
from ..methods import get_method
from ..ops import ReLUConvBN, build_op, check_primitives
from ..options import option
from ..run.checkpoint import atomic_write_text
from ..strategies.base import CellEncoding
from ..supernet import SupernetBase
from .base import SearchSpace, register_space
from .nb201_bench import NB201_DATASETS, NB201Table, metric_key, open_benchmark

log = logging.getLogger(__name__)

#: The benchmark's five ops, in the order of its ``search_space`` (the columns of α).
NB201_PRIMITIVES: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

#: Nodes of a cell, the input node 0 included.
NB201_NODES = 4

#: ``(target, source)`` of every edge, in α row order.
NB201_EDGES: tuple[tuple[int, int], ...] = tuple((i, j) for i in range(1, NB201_NODES) for j in range(i))

GENOTYPE_FORMAT = "nb201-genotype/1"

Edge = tuple[str, int]


def check_nb201_primitives(primitives) -> tuple[str, ...]:
    """Validate a search space for NAS-Bench-201: registered, distinct ops, each one of :data:`NB201_PRIMITIVES`.

    Raises :class:`ConfigError` for any other op: the benchmark only has cells over those five, so a cell with
    another op could not be looked up (and its results would not be comparable to the benchmark's).
    """
    primitives = check_primitives(primitives)
    other = [p for p in primitives if p not in NB201_PRIMITIVES]
    if other:
        raise ConfigError(
            f"--space nb201: op(s) {', '.join(other)} are not NAS-Bench-201 ops; the benchmark only has cells over "
            f"{', '.join(NB201_PRIMITIVES)}"
        )
    return primitives


# ---------------------------------------------------------------------------------------------------------
# The genotype and its benchmark string


@dataclass(frozen=True)
class NB201Genotype:
    """A discrete NAS-Bench-201 cell.

    Attributes:
        nodes: for node ``i`` = 1..3, its ``i`` ``(op_name, source_node)`` pairs, sources ``0..i-1`` in order.
        primitives: the search space it was derived from, if known (not part of equality).

    ``str(g)`` is the benchmark's architecture string, e.g.
    ``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|``,
    and :meth:`from_string` parses it back. Construction validates; problems raise :class:`GenotypeError`.
    """

    nodes: tuple[tuple[Edge, ...], ...]
    primitives: tuple[str, ...] | None = field(default=None, compare=False)

    def __post_init__(self):
        # Normalise lists (JSON, user code) to tuples so genotypes are hashable and compare by value.
        try:
            nodes = tuple(tuple((op, j) for op, j in node) for node in self.nodes)
        except (TypeError, ValueError):
            raise GenotypeError(f"nodes must be a sequence of nodes, each a sequence of (op, source) pairs, "
                                f"got {self.nodes!r}") from None
        object.__setattr__(self, "nodes", nodes)
        if self.primitives is not None:
            object.__setattr__(self, "primitives", tuple(self.primitives))
        self._validate()

    def _validate(self) -> None:
        if len(self.nodes) != NB201_NODES - 1:
            raise GenotypeError(f"a NAS-Bench-201 cell has {NB201_NODES - 1} nodes after its input, got "
                                f"{len(self.nodes)}")
        for i, node in enumerate(self.nodes, start=1):
            if len(node) != i:
                raise GenotypeError(f"node {i} must have {i} edge(s), one from each of nodes 0..{i - 1}, got "
                                    f"{len(node)}")
            for op, j in node:
                if not isinstance(op, str) or not isinstance(j, int) or isinstance(j, bool):
                    raise GenotypeError(f"node {i}: an edge must be an (op_name, source_index) pair, got {(op, j)!r}")
                if op not in NB201_PRIMITIVES:
                    raise GenotypeError(f"node {i}: unknown op {op!r}; NAS-Bench-201 ops are "
                                        f"{', '.join(NB201_PRIMITIVES)}")
                if self.primitives is not None and op not in self.primitives:
                    raise GenotypeError(f"node {i}: op {op!r} is not in the genotype's primitives")
                if not 0 <= j < i:
                    raise GenotypeError(f"node {i}: source node {j} is out of range (node {i} reads nodes "
                                        f"0..{i - 1})")
            sources = [j for _, j in node]
            if sources != list(range(i)):
                # The benchmark indexes architectures by their canonical string, so the order matters.
                raise GenotypeError(f"node {i} must read nodes {', '.join(map(str, range(i)))} once each, in order; "
                                    f"got {', '.join(map(str, sources))}")

    @property
    def edges(self) -> tuple[Edge, ...]:
        """The ``(op, source)`` of every edge, in α row order (6 pairs)."""
        return tuple(e for node in self.nodes for e in node)

    @property
    def normal(self) -> tuple[Edge, ...]:
        """The edges, for code that counts the ops of a DARTS genotype's normal cell (NB201 has one cell type)."""
        return self.edges

    def ops(self) -> set[str]:
        return {op for op, _ in self.edges}

    # -- the benchmark string -------------------------------------------------------------------------
    def __str__(self) -> str:
        return "|" + "|+|".join("|".join(f"{op}~{j}" for op, j in node) for node in self.nodes) + "|"

    @classmethod
    def from_string(cls, text: str, primitives: Sequence[str] | None = None) -> "NB201Genotype":
        """Parse the benchmark's string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` without evaluating anything.

        Raises :class:`GenotypeError` naming the problem: empty text, missing ``|`` bars, a wrong number of
        nodes or edges, an edge that is not ``op~index``, an unknown op, a source out of range or out of order.
        """
        if not isinstance(text, str):
            raise GenotypeError(f"a NAS-Bench-201 architecture string must be a str, got {type(text).__name__}")
        s = text.strip()
        if not s:
            raise GenotypeError("empty NAS-Bench-201 architecture string")
        shown = s if len(s) <= 120 else s[:117] + "..."
        parts = s.split("+")
        if len(parts) != NB201_NODES - 1:
            raise GenotypeError(f"{shown!r}: has {len(parts)} node(s) separated by '+', a NAS-Bench-201 cell has "
                                f"{NB201_NODES - 1}")
        nodes = []
        for i, part in enumerate(parts, start=1):
            if len(part) < 2 or not (part.startswith("|") and part.endswith("|")):
                raise GenotypeError(f"{shown!r}: node {i} ({part!r}) must be enclosed in '|' bars, as "
                                    f"'|op~0|op~1|'")
            edges = []
            for item in part[1:-1].split("|"):
                op, sep, src = item.partition("~")
                if not sep or not op or "~" in src or not re.fullmatch(r"[0-9]{1,9}", src):
                    item = item if len(item) <= 40 else item[:37] + "..."
                    raise GenotypeError(f"{shown!r}: node {i}: edge {item!r} is not of the form op~source_index")
                edges.append((op, int(src)))
            nodes.append(tuple(edges))
        try:
            return cls(tuple(nodes), primitives)
        except GenotypeError as e:
            raise GenotypeError(f"{shown!r}: {e}") from None

    # -- JSON -----------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": GENOTYPE_FORMAT, "arch": str(self),
                "primitives": list(self.primitives) if self.primitives is not None else None}

    @classmethod
    def from_dict(cls, d) -> "NB201Genotype":
        """Build and validate a genotype from its JSON object; :class:`GenotypeError` if malformed."""
        if not isinstance(d, dict):
            raise GenotypeError(f"an NB201 genotype must be a JSON object, got {type(d).__name__}")
        if d.get("format") != GENOTYPE_FORMAT:
            raise GenotypeError(f"genotype format {d.get('format')!r} is not {GENOTYPE_FORMAT!r}")
        unknown = set(d) - {"format", "arch", "primitives"}
        if unknown:
            raise GenotypeError(f"NB201 genotype has unknown field(s) {', '.join(sorted(unknown))}")
        if not isinstance(d.get("arch"), str):
            raise GenotypeError("NB201 genotype needs an 'arch' string such as '|nor_conv_3x3~0|+|...|'")
        prims = d.get("primitives")
        if prims is not None and (not isinstance(prims, list) or not all(isinstance(p, str) for p in prims)):
            raise GenotypeError("primitives must be a list of op names")
        return cls.from_string(d["arch"], prims)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def save(self, path: str) -> None:
        """Write the genotype as JSON, atomically."""
        atomic_write_text(path, self.to_json() + "\n")


def load_nb201_genotype(path: str) -> NB201Genotype:
    """Read an NB201 genotype from a JSON file written by :meth:`NB201Genotype.save`, or from a text file holding
    the benchmark's architecture string. Raises :class:`GenotypeError` naming the file and the problem."""
    text = read_genotype_file(path)
    try:
        if text.lstrip().startswith("|"):
            return NB201Genotype.from_string(text)
        try:
            d = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as e:
            raise GenotypeError(f"not valid JSON ({getattr(e, 'msg', 'nested too deeply')})") from None
        return NB201Genotype.from_dict(d)
    except GenotypeError as e:
        raise GenotypeError(f"{path}: {e}") from None


def nb201_cell_of(primitives: Sequence[str]):
    """``x -> NB201Genotype``: the cell whose edge ``e`` (α row order) takes op ``primitives[x[e]]``."""
    primitives = tuple(primitives)

    def decode(x) -> NB201Genotype:
        if len(x) != len(NB201_EDGES):
            raise GenotypeError(f"an NB201 cell has {len(NB201_EDGES)} edges, got {len(x)} choices")
        nodes, e = [], 0
        for i in range(1, NB201_NODES):
            nodes.append(tuple((primitives[x[e + j]], j) for j in range(i)))
            e += i
        return NB201Genotype(tuple(nodes), primitives)

    return decode


def derive_nb201(weights: torch.Tensor, primitives: Sequence[str], max_skip: int | None = None) -> NB201Genotype:
    """The discrete cell that op strengths encode: every edge takes its strongest op, ``none`` included.

    This is the rule of the benchmark's own search code (``genotype()`` of its DARTS/GDAS search models): a
    ``none`` edge is a real choice in NAS-Bench-201, unlike in DARTS where the two strongest non-zero edges of a
    node are kept.

    Args:
        weights: ``(6, K)`` op strengths (softmax(α) for DARTS), rows in :data:`NB201_EDGES` order.
        primitives: the K op names of the columns.
        max_skip: if given, keep at most this many ``skip_connect`` edges: the weakest skips (by skip strength)
            take their next strongest op instead (P-DARTS Sec. 3.3, as ``--max-skip`` does in the DARTS space).
    """
    primitives = tuple(primitives)
    w = weights.detach().to("cpu", torch.float64).clone()
    if w.shape != (len(NB201_EDGES), len(primitives)):
        raise GenotypeError(f"NB201 op strengths must be ({len(NB201_EDGES)}, {len(primitives)}), got "
                            f"{tuple(w.shape)}")
    choice = w.argmax(dim=1).tolist()
    if max_skip is not None and "skip_connect" in primitives and len(primitives) > 1:
        skip = primitives.index("skip_connect")
        skips = sorted((e for e, k in enumerate(choice) if k == skip), key=lambda e: float(w[e, skip]))
        for e in skips[: max(len(skips) - max_skip, 0)]:
            w[e, skip] = float("-inf")
            choice[e] = int(w[e].argmax())
    nodes, e = [], 0
    for i in range(1, NB201_NODES):
        nodes.append(tuple((primitives[choice[e + j]], j) for j in range(i)))
        e += i
    return NB201Genotype(tuple(nodes), primitives)


# ---------------------------------------------------------------------------------------------------------
# The search network (module names as the benchmark's TinyNetworkDarts / ResNetBasicblock)


class ResNetBasicBlock(nn.Module):
    """The residual reduction block between stages: ``downsample(x) + conv_b(conv_a(x))``.

    Args:
        C_in, C_out: channels in and out.
        stride: 2 between stages (the only use in the benchmark), or 1.
    ``conv_a`` = ReLU-Conv3x3(stride)-BN and ``conv_b`` = ReLU-Conv3x3-BN, all affine; the shortcut is
    AvgPool2d(2, 2) then a bare 1x1 conv at stride 2 (no ReLU, no BN), the identity when shapes already match.
    Maps ``(B, C_in, H, W)`` to ``(B, C_out, H/stride, W/stride)`` (H, W even).
    """

    def __init__(self, C_in: int, C_out: int, stride: int = 2):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ResNetBasicBlock stride must be 1 or 2, got {stride}")
        self.conv_a = ReLUConvBN(C_in, C_out, 3, stride, 1, affine=True)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, 1, affine=True)
        if stride == 2:
            self.downsample = nn.Sequential(nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
                                            nn.Conv2d(C_in, C_out, 1, stride=1, padding=0, bias=False))
        elif C_in != C_out:
            self.downsample = ReLUConvBN(C_in, C_out, 1, 1, 0, affine=True)
        else:
            self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return residual + self.conv_b(self.conv_a(x))


def build_macro(net: nn.Module, C: int, N: int, in_channels: int, make_cell) -> int:
    """The benchmark's macro skeleton on ``net``: ``stem`` (3x3 conv to C, BN), ``cells`` (three stages of N
    ``make_cell(channels)`` at C, 2C, 4C, joined by residual reduction blocks) and ``lastact`` (BN, ReLU), built in
    this order; returns the last stage's channels (the head's input)."""
    net.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
    net.cells = nn.ModuleList()
    C_prev = C
    for stage in range(3):
        C_curr = C * 2**stage
        if stage:
            net.cells.append(ResNetBasicBlock(C_prev, C_curr, 2))
        for _ in range(N):
            net.cells.append(make_cell(C_curr))
        C_prev = C_curr
    net.lastact = nn.Sequential(nn.BatchNorm2d(C_prev), nn.ReLU(inplace=False))
    return C_prev


class NB201SearchCell(nn.Module):
    """A search cell: node ``i`` = ``Σ_{j<i} c_ij · edge_ij(h_j, w_ij)``, the output is node 3.

    Args:
        C: channels of every node.
        primitives: the ordered op names (columns of α).
        method: the search method whose ``build_edge`` makes the edges (a :class:`MixedOp` for DARTS). Edges are
            built with ``search_bn=False``: the benchmark's search cells run the pools without BatchNorm, and
            every BatchNorm inside (the nor_convs') is non-affine.
    """

    def __init__(self, C: int, primitives: tuple[str, ...], method):
        super().__init__()
        self.edges = nn.ModuleList(method.build_edge(C, 1, primitives, search_bn=False) for _ in NB201_EDGES)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, coefficients: torch.Tensor | None = None):
        """``x``: (B, C, H, W); ``weights``: (6, K); ``coefficients``: None or (6,). Returns (B, C, H, W).

        Edge by edge: each edge runs through its own ``--kernels`` mixed-op implementation.
        """
        nodes = [x]
        e = 0
        for i in range(1, NB201_NODES):
            s = None
            for j in range(i):
                y = self.edges[e + j](nodes[j], weights[e + j])
                if coefficients is not None:
                    y = coefficients[e + j] * y
                s = y if s is None else s + y
            e += i
            nodes.append(s)
        return nodes[-1]


class NB201Supernet(SupernetBase):
    """The NAS-Bench-201 search network, with the interface of :class:`darts.search.Supernet`.

    Args:
        C: channels of the first stage (16 in the benchmark).
        num_classes: classifier outputs.
        cells_per_stage: N, cells in each of the three stages (5 in the benchmark).
        primitives: the ordered search space, a subset of :data:`NB201_PRIMITIVES` (columns of α).
        in_channels: image channels.
        kernels: mixed-op implementation, ``auto`` | ``reference`` | ... (see :mod:`kernels`).
        method: a :class:`darts.methods.SearchMethod` (default: plain DARTS).

    The stem, reduction blocks and last BatchNorm are affine; every BatchNorm inside the cells is non-affine.
    The benchmark's search code also turns off the running statistics of the cells' BatchNorms; here they are
    kept (the project's mixed ops track them), which changes nothing in training mode. All cells share one
    ``(6, K)`` α, ``alphas.cell``. ``forward`` returns logits only.
    """

    space = "nb201"

    def __init__(self, C: int, num_classes: int, cells_per_stage: int, primitives=NB201_PRIMITIVES,
                 in_channels: int = 3, kernels: str = "auto", method=None):
        if cells_per_stage < 1:
            raise ConfigError(f"NAS-Bench-201 needs at least one cell per stage, got {cells_per_stage}")
        if method is None:
            method = get_method("darts")
        super().__init__(method, check_nb201_primitives(primitives), kernels)
        self.C, self.cells_per_stage = C, cells_per_stage
        C_prev = build_macro(self, C, cells_per_stage, in_channels,
                             lambda C_curr: NB201SearchCell(C_curr, self.primitives, self.method))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)
        self.alphas = self.make_alphas({"cell": len(NB201_EDGES)})

    def node_in_degrees(self) -> list[int]:
        """Incoming edges of nodes 1..3, in α row order: node i reads every earlier node."""
        return list(range(1, NB201_NODES))

    def genotype(self, max_skip: int | None = None) -> NB201Genotype:
        """The discrete cell α encodes now: the argmax op of every edge, ``none`` included (:func:`derive_nb201`);
        ``max_skip`` caps the number of ``skip_connect`` edges."""
        return derive_nb201(self.strengths()[0], self.primitives, max_skip=max_skip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, in_channels, H, W) with H, W divisible by 4. Returns logits (B, num_classes)."""
        self._dispatch(x)
        (weights,) = self.edge_weights()
        (coefficients,) = self.edge_coefficients()
        h = self.stem(x)
        for cell in self.cells:
            h = cell(h) if isinstance(cell, ResNetBasicBlock) else cell(h, weights, coefficients)
        h = self.global_pooling(self.lastact(h))
        return self.classifier(h.flatten(1))


# ---------------------------------------------------------------------------------------------------------
# The discrete network (the benchmark's TinyNetwork and InferCell)


class NB201Cell(nn.Module):
    """A discrete cell: node ``i`` sums its ``i`` chosen ops on the earlier nodes (``none`` included, as a zero
    module, as the benchmark's ``InferCell``); the cell's output is node 3."""

    def __init__(self, genotype: NB201Genotype, C: int):
        super().__init__()
        self.edges = nn.ModuleList(build_op(op, C, 1, True) for op, _ in genotype.edges)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes, e = [x], 0
        for i in range(1, NB201_NODES):
            nodes.append(sum(self.edges[e + j](nodes[j]) for j in range(i)))
            e += i
        return nodes[-1]


class NB201Network(nn.Module):
    """The benchmark's discrete network of a cell (``TinyNetwork``): a 3x3 conv stem with ``C`` channels and BN,
    three stages of ``N`` cells at C, 2C, 4C joined by residual reduction blocks, BN-ReLU, global pooling and a
    linear classifier. Every BatchNorm is affine; ops as the search space's (``nor_conv`` is ReLU-Conv-BN).

    ``forward(x)`` returns ``(logits, None)`` like the DARTS evaluation networks (no auxiliary head).
    """

    def __init__(self, genotype: NB201Genotype, C: int = 16, N: int = 5, num_classes: int = 10,
                 in_channels: int = 3):
        super().__init__()
        self.genotype = genotype
        self.drop_path_prob = 0.0  # set by the retraining loop; the benchmark uses none
        C_prev = build_macro(self, C, N, in_channels, lambda C_curr: NB201Cell(genotype, C_curr))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def forward(self, x: torch.Tensor):
        h = self.stem(x)
        for cell in self.cells:
            h = cell(h)
        return self.classifier(self.global_pooling(self.lastact(h)).flatten(1)), None


# ---------------------------------------------------------------------------------------------------------
# The space


@register_space
class NB201Space(SearchSpace):
    """NAS-Bench-201's cell and macro network; genotypes are the benchmark's strings (:class:`NB201Genotype`).

    Every method runs here with AutoDL-Projects' NAS-Bench-201 optimiser (``configs/nas-benchmark/algos``: weight
    decay 5e-4, Nesterov momentum); a method's own presets override them.
    """

    name = "nb201"
    paper = "Dong and Yang, NAS-Bench-201: Extending the Scope of Reproducible Neural Architecture Search, ICLR 2020"
    primitives = NB201_PRIMITIVES
    genotype_format = GENOTYPE_FORMAT
    flag_prefix = "nb201"
    presets = {"all": dict(weight_decay=5e-4, nesterov=True), "paper": dict(nb201_cells=5),
               "small": dict(nb201_cells=1)}

    @dataclass
    class Options:
        cells: int = option(5, "cells per stage N (cifar: 5, digits: 1)", positive=True, max=1000)
        file: str | None = option(None, "the official benchmark file; with the nas_201_api package installed, the "
                                  "derived cell's true accuracy is logged each epoch", metavar="FILE")
        table: str | None = option(None, "a table of the benchmark's accuracies (CSV, see the README): the derived "
                                   "cell's accuracies are logged each epoch, and --evaluator table reads it",
                                   metavar="FILE")
        dataset: str = option("cifar10", "the benchmark's data set that --evaluator table optimises (its validation "
                              "accuracy)", choices=tuple(NB201_DATASETS))

    def setup(self):
        self._benchmark = None
        self._table = None

    def lookup_table(self) -> NB201Table | None:
        """The ``--nb201-table`` of this run, read once (None without one)."""
        if self.options.table is not None and self._table is None:
            self._table = NB201Table(self.options.table)
        return self._table

    def check_run(self, cfg, method):
        self.lookup_table()  # a missing or malformed table is an error before the run starts

    def check_primitives(self, primitives):
        return check_nb201_primitives(primitives)

    def build_supernet(self, *, C, num_classes, in_channels, primitives, method, kernels="auto"):
        return NB201Supernet(C, num_classes, self.options.cells, primitives, in_channels=in_channels,
                             kernels=kernels, method=method)

    def describe(self, model):
        n = sum(p.numel() for p in model.weight_parameters())
        return f"NAS-Bench-201 supernet: {self.options.cells} cells per stage, {model.C} channels, {n} weights"

    def epoch_metrics(self, genotype, dataset):
        """The derived cell's benchmark accuracies: every data set's from ``--nb201-table``
        (``nb201_<dataset>_test`` / ``_val``), and the official API's 200-epoch test accuracy (``nb201_test_acc``)."""
        out = {}
        table = self.lookup_table()
        record = table.query(genotype) if table is not None else None
        if record is not None:
            for ds, acc in record.accuracy.items():
                for split, value in acc.items():
                    out[f"nb201_{metric_key(ds)}_{split}"] = value
        if self.options.file is not None:
            if self._benchmark is None:
                self._benchmark = open_benchmark(self.options.file) or False
            acc = self._benchmark.test_accuracy(genotype, dataset) if self._benchmark else None
            if acc is not None:
                out["nb201_test_acc"] = acc
        return out

    def encoding(self, primitives):
        """One position per edge (α row order), valued by the index of its op in ``primitives``; the positions are
        grouped by the node the edge ends in (1: one edge, 2: two, 3: three)."""
        primitives = self.check_primitives(primitives)

        def encode(g):
            return [primitives.index(op) for op, _ in g.edges]

        groups, e = [], 0
        for i in range(1, NB201_NODES):
            groups.append(list(range(e, e + i)))
            e += i
        return CellEncoding([len(primitives)] * len(NB201_EDGES), nb201_cell_of(primitives), encode,
                            f"{len(NB201_EDGES)} edges x {len(primitives)} ops", groups)

    def table_score(self, genotype):
        """The cell's ``--nb201-dataset`` validation accuracy (%) in ``--nb201-table``."""
        table = self.lookup_table()
        if table is None:
            raise ConfigError("--evaluator table reads the benchmark's accuracies: give --nb201-table FILE (a CSV of "
                              "the layout the README describes)")
        return None if genotype is None else table.accuracy(genotype, self.options.dataset, "val")

    def cost_positions(self, ncfg, image_size):
        """Every edge at C, 2C, 4C channels and H, H/2, H/4, once per cell of each of the three stages."""
        rows, H = [[] for _ in NB201_EDGES], image_size
        for stage in range(3):
            C = ncfg.init_channels * 2 ** stage
            for _ in range(ncfg.layers):
                for where in rows:
                    where.append((C, 1, H))
            H = (H + 1) // 2
        return {"cell": rows}

    def genotype_edges(self, genotype):
        return [("cell", e, op) for e, (op, _) in enumerate(genotype.edges)]

    def empty_genotype(self, primitives):
        return nb201_cell_of(NB201_PRIMITIVES)([0] * len(NB201_EDGES))

    def with_ops(self, genotype, ops):
        return nb201_cell_of(NB201_PRIMITIVES)([NB201_PRIMITIVES.index(op) for op in ops])

    def table_description(self):
        return f"{self.options.dataset} validation accuracy in {self.options.table}"

    def genotype_from_dict(self, d):
        return NB201Genotype.from_dict(d)

    def parse_genotype_text(self, text):
        return NB201Genotype.from_string(text) if text.lstrip().startswith("|") else None

    def retrain_presets(self, dataset, imagenet_layout=False):
        """The benchmark's training (``configs/nas-benchmark/hyper-opts/200E.config``): 200 epochs, SGD with Nesterov
        momentum 0.9, lr 0.1 cosine to 0, weight decay 5e-4, batch 256, no clipping, crop and flip only; C=16, N=5.
        On the small sets (digits) 10 epochs at batch 64."""
        base = dict(lr=0.1, lr_schedule="cosine", nesterov=True, weight_decay=5e-4, grad_clip=0.0,
                    label_smoothing=0.0, init_channels=16, layers=5, auxiliary=False, cutout=False,
                    drop_path_prob=0.0, image_size=32)
        if dataset == "digits":
            return {**base, "epochs": 10, "batch_size": 64, "num_workers": 0, "image_size": 8}
        return {**base, "epochs": 200, "batch_size": 256, "num_workers": 0 if dataset in ("custom", "synthetic") else 2}

    def build_network(self, genotype, cfg, num_classes, in_channels, image_size):
        """The benchmark's ``TinyNetwork`` of the cell: ``--init-channels`` C (16) and ``--layers`` N cells per stage
        (5)."""
        if cfg.imagenet_layout:
            raise ConfigError("--imagenet-layout builds the DARTS ImageNet network; NAS-Bench-201 cells have their own")
        return NB201Network(genotype, cfg.init_channels, cfg.layers, num_classes, in_channels)
