"""The DARTS search space (Liu et al., ICLR 2019, Sec. 2.1-2.2): search cells of mixed ops, the supernet, and the
space's declaration (primitives, genotype format, evaluation network).

Layout as the original ``cnn/model_search.py``: a 3x3 conv stem with ``stem_multiplier * C`` channels, ``layers``
cells with reduction cells at ``layers//3`` and ``2*layers//3`` (channels doubled there), global average
pooling and a linear classifier. Normal cells share one α, reduction cells another. Genotypes are
:class:`darts.genotype.Genotype`; the evaluation networks are :mod:`darts.final`.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
from dataclasses import dataclass

import torch
import torch.nn as nn

from kernels.reference import cell_reference

from ..counting import count_macs
from ..dispatch import get_cell_impl
from ..errors import ConfigError, DartsError
from ..final import NetworkCIFAR, NetworkImageNet, count_parameters
from ..genotype import CELLS, FORMAT, Genotype, derive_genotype, num_edges, parse_genotype_text
from ..methods import get_method
from ..ops import DARTS_PRIMITIVES, FactorizedReduce, ReLUConvBN
from ..options import option
from ..run.checkpoint import atomic_write_text
from ..strategies.base import CellEncoding
from ..supernet import MixedOp, SupernetBase
from ..zoo import get_genotype
from .base import SearchSpace, register_space

log = logging.getLogger(__name__)


class SearchCell(nn.Module):
    """A cell of the supernet: every intermediate node sums a mixed op on every earlier node.

    It implements :class:`kernels.interface.SearchCellLike` (``preprocess``, ``edges``, ``steps``, ``multiplier``)
    for the ``--kernels`` cell implementations.
    """

    uses_kernels = True  # its forward runs the --kernels cell implementation (set by SupernetBase.set_kernels)

    def __init__(self, steps, multiplier, C_prev_prev, C_prev, C, reduction, reduction_prev, primitives,
                 method=None):
        super().__init__()
        self.reduction = reduction
        self.steps = steps
        self.multiplier = multiplier
        # The previous-previous cell output is at twice our resolution after a reduction.
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(C_prev_prev, C, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList()
        for i in range(steps):
            for j in range(2 + i):
                stride = 2 if reduction and j < 2 else 1
                self.edges.append(method.build_edge(C, stride, primitives) if method is not None
                                  else MixedOp(C, stride, primitives))
        # Methods that change how an edge or a node is computed run edge by edge (see SearchMethod).
        self.generic = bool(method is not None and method.generic_cell)
        self.impl = "reference"  # set by Supernet.set_kernels

    def preprocess(self, s0: torch.Tensor, s1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two cell inputs, brought to ``C`` channels at this cell's input resolution."""
        return self.preprocess0(s0), self.preprocess1(s1)

    def forward(self, s0, s1, weights, coefficients=None):
        """``s0``, ``s1``: outputs of the two previous cells; ``weights``: (edges, K); ``coefficients``: None or
        (edges,) factors on the edge outputs. Returns (B, m·C, H, W).

        The cell's sum over edges and ops is computed by the implementation chosen with ``set_kernels`` (the
        reference loop is :func:`kernels.reference.cell_reference`), or edge by edge for methods that need it.
        """
        if self.generic or coefficients is not None:
            return self.forward_edges(s0, s1, weights, coefficients)
        return get_cell_impl(self.impl)(self, s0, s1, weights)

    def forward_edges(self, s0, s1, weights, coefficients=None):
        """Node ``i`` = ``Σ_j c_ij · edge_ij(h_j, w_ij)`` edge by edge (``c`` = 1 without coefficients)."""
        return cell_reference(self, s0, s1, weights, coefficients)


class Supernet(SupernetBase):
    """The DARTS search network.

    Args:
        C: initial channels (16 in the paper).
        num_classes: classifier outputs.
        layers: number of cells (8 in the paper).
        primitives: the ordered search space (columns of α).
        steps: intermediate nodes per cell (4).
        multiplier: nodes concatenated into a cell's output (4).
        stem_multiplier: stem channels are ``stem_multiplier * C`` (3).
        in_channels: image channels (3 for RGB, 1 for digits).
        kernels: mixed-op implementation, ``auto`` | ``reference`` | ... (see :mod:`darts.dispatch`).
        method: a :class:`darts.methods.SearchMethod` (default: DARTS): the relaxation of α, the edge module, and
            the per-edge coefficients.

    The stem's BatchNorm is affine as in the reference code; every BatchNorm inside the cells is not.
    ``forward`` returns logits only: the supernet does not own its loss.
    """

    def __init__(self, C: int, num_classes: int, layers: int, primitives, steps: int = 4, multiplier: int = 4,
                 stem_multiplier: int = 3, in_channels: int = 3, kernels: str = "auto", method=None):
        if method is None:
            method = get_method("darts")
        super().__init__(method, primitives, kernels)
        self.C, self.steps, self.multiplier = C, steps, multiplier
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
        C_prev_prev, C_prev, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            cell = SearchCell(steps, multiplier, C_prev_prev, C_prev, C_curr, reduction, reduction_prev,
                              self.primitives, self.method)
            self.cells.append(cell)
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, multiplier * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)
        self.alphas = self.make_alphas({"normal": num_edges(steps), "reduce": num_edges(steps)})

    def node_in_degrees(self) -> list[int]:
        """Incoming edges of each intermediate node, in α row order (node i of a DARTS cell reads 2 + i nodes)."""
        return [2 + i for i in range(self.steps)]

    def genotype(self, max_skip: int | None = None) -> Genotype:
        """The discrete cell that α encodes now, by the method's cell rule (the DARTS rule unless it says otherwise,
        :func:`darts.genotype.derive_genotype`)."""
        wn, wr = self.strengths()
        return derive_genotype(wn, wr, self.primitives, self.steps, self.multiplier, max_skip=max_skip,
                               rule=self.method.cell_rule, threshold=self.method.cell_threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, in_channels, H, W) with H, W divisible by 4. Returns logits (B, num_classes)."""
        self._dispatch(x)
        w_normal, w_reduce = self.edge_weights()
        c_normal, c_reduce = self.edge_coefficients()
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            if cell.reduction:
                s0, s1 = s1, cell(s0, s1, w_reduce, c_reduce)
            else:
                s0, s1 = s1, cell(s0, s1, w_normal, c_normal)
        out = self.global_pooling(s1)
        return self.classifier(out.flatten(1))


_CIFAR_FINAL = dict(epochs=600, batch_size=96, lr=0.025, lr_schedule="cosine", weight_decay=3e-4,
                    label_smoothing=0.0, init_channels=36, layers=20, auxiliary=True, cutout=True,
                    drop_path_prob=0.2, num_workers=2, image_size=32)
RETRAIN_PRESETS = {
    "cifar10": _CIFAR_FINAL,
    "cifar100": _CIFAR_FINAL,
    "folder": _CIFAR_FINAL,
    "custom": dict(_CIFAR_FINAL, num_workers=0, cutout=False, auxiliary=False),
    "imagenet": dict(epochs=250, batch_size=128, lr=0.1, lr_schedule="step", weight_decay=3e-5,
                     label_smoothing=0.1, init_channels=48, layers=14, auxiliary=True, cutout=False,
                     drop_path_prob=0.0, num_workers=4, image_size=224),
    "synthetic": dict(_CIFAR_FINAL, epochs=1, num_workers=0),
    "digits": dict(epochs=10, batch_size=64, lr=0.025, lr_schedule="cosine", weight_decay=3e-4,
                   label_smoothing=0.0, init_channels=16, layers=8, auxiliary=False, cutout=False,
                   drop_path_prob=0.1, num_workers=0, image_size=8),
}


@register_space
class DartsSpace(SearchSpace):
    """The DARTS CNN cell: two inputs, ``nodes`` intermediate nodes each reading every earlier node, the eight DARTS
    primitives, normal and reduction cells; retrained in NetworkCIFAR / NetworkImageNet (:mod:`darts.final`)."""

    name = "darts"
    paper = "Liu et al., DARTS: Differentiable Architecture Search, ICLR 2019"
    primitives = DARTS_PRIMITIVES
    genotype_format = FORMAT
    presets = {"paper": dict(layers=8), "small": dict(layers=5)}
    node_inputs = 2

    @dataclass
    class Options:
        layers: int = option(8, "number of cells of the supernet (cifar: 8, digits: 5)", positive=True, max=1000)
        nodes: int = option(4, "intermediate nodes per cell", positive=True, max=100)
        stem_multiplier: int = option(3, "stem channels = stem_multiplier * init_channels", positive=True, max=100)

    def build_supernet(self, *, C, num_classes, in_channels, primitives, method, kernels="auto"):
        o = self.options
        return Supernet(C, num_classes, o.layers, self.check_primitives(primitives), steps=o.nodes,
                        multiplier=o.nodes, stem_multiplier=o.stem_multiplier, in_channels=in_channels,
                        kernels=kernels, method=method)

    def describe(self, model):
        o = self.options
        n = sum(p.numel() for p in model.weight_parameters())
        return f"DARTS supernet: {o.layers} cells, {model.C} channels, {o.nodes} nodes, {n} weights"

    def encoding(self, primitives):
        """Per cell (normal, then reduction) and node ``i``: which two of its ``i + 2`` inputs it reads (one of
        ``C(i+2, 2)`` pairs) and the op on each (any primitive but ``none``), as the DARTS rule derives cells."""
        ops = [p for p in self.check_primitives(primitives) if p != "none"]
        if not ops:
            raise ConfigError("--strategy in the DARTS space needs an op other than none in --primitives")
        steps = self.options.nodes
        pairs = [list(itertools.combinations(range(i + 2), 2)) for i in range(steps)]
        sizes, groups = [], []
        for _ in CELLS:
            for i in range(steps):
                groups.append(list(range(len(sizes), len(sizes) + 3)))
                sizes += [len(pairs[i]), len(ops), len(ops)]

        def decode(x):
            cells, at = [], 0
            for _ in CELLS:
                edges = []
                for i in range(steps):
                    (a, b), op_a, op_b = pairs[i][x[at]], ops[x[at + 1]], ops[x[at + 2]]
                    edges += [(op_a, a), (op_b, b)]
                    at += 3
                cells.append(tuple(edges))
            concat = tuple(range(2, 2 + steps))
            return Genotype(cells[0], concat, cells[1], concat, tuple(primitives))

        def encode(g):
            x = []
            for edges in (g.normal, g.reduce):
                for i in range(steps):
                    (op_a, a), (op_b, b) = sorted(edges[2 * i: 2 * i + 2], key=lambda e: e[1])
                    x += [pairs[i].index((a, b)), ops.index(op_a), ops.index(op_b)]
            return x

        return CellEncoding(sizes, decode, encode, f"2 cells x {steps} nodes x (input pair, 2 ops of {len(ops)})",
                            groups)

    # -- costs: where each edge's op runs in NetworkCIFAR ---------------------------------------------------
    def _row(self, node: int, j: int) -> int:
        i = node - 2
        return i * (i + 3) // 2 + j  # α rows: node i has i + 2 incoming edges, in input order

    def cost_positions(self, ncfg, image_size):
        """Per cell type and α row, ``(C, stride, H)`` in every cell of that type: reduction cells at ``layers//3``
        and ``2*layers//3`` double C, their edges from the cell inputs run at stride 2."""
        steps = self.options.nodes
        rows = {g: [[] for _ in range(num_edges(steps))] for g in CELLS}
        C, H, L = ncfg.init_channels, image_size, ncfg.layers
        for i in range(L):
            reduction = i in (L // 3, 2 * L // 3)
            if reduction:
                C *= 2
            g = "reduce" if reduction else "normal"
            for node in range(2, 2 + steps):
                for j in range(node):
                    stride = 2 if reduction and j < 2 else 1
                    rows[g][self._row(node, j)].append((C, stride, H if j < 2 or not reduction else (H + 1) // 2))
            if reduction:
                H = (H + 1) // 2
        return rows

    def genotype_edges(self, genotype):
        return [(g, self._row(node, j), op) for g in CELLS for op, j, node in genotype.edges(g)]

    def empty_genotype(self, primitives):
        edges = tuple(("none", j) for _ in range(self.options.nodes) for j in (0, 1))
        concat = tuple(range(2, 2 + self.options.nodes))
        return Genotype(edges, concat, edges, concat)

    def with_ops(self, genotype, ops):
        n = len(genotype.normal)
        return dataclasses.replace(genotype, normal=tuple((op, j) for op, (_, j) in zip(ops[:n], genotype.normal)),
                                   reduce=tuple((op, j) for op, (_, j) in zip(ops[n:], genotype.reduce)))

    def may_take(self, group, row, op):
        return op != "none"  # the DARTS rule never derives a zero edge

    def cheapest_topology(self, genotype, table):
        """Per node, the two inputs whose cheapest ops (``none`` excluded) cost least, with those ops."""
        cells = []
        for g in CELLS:
            edges = []
            for node in range(2, 2 + self.options.nodes):
                def cheapest(j):
                    r = table.edges[g][self._row(node, j)]
                    op = min((o for o in r if o != "none"), key=lambda o: r[o])
                    return r[op], op

                a, b = sorted(itertools.combinations(range(node), 2),
                              key=lambda p: cheapest(p[0])[0] + cheapest(p[1])[0])[0]
                edges += [(cheapest(a)[1], a), (cheapest(b)[1], b)]
            cells.append(tuple(edges))
        concat = tuple(range(2, 2 + self.options.nodes))
        return Genotype(cells[0], concat, cells[1], concat, genotype.primitives)

    def genotype_from_dict(self, d):
        return Genotype.from_dict(d)

    def parse_genotype_text(self, text):
        stripped = text.lstrip()
        return parse_genotype_text(stripped) if stripped.startswith("Genotype(") else None

    def report(self, genotype, run_dir):
        """``comparison.json`` (the cell beside DARTS_V2 in the CIFAR setting) and the drawings of both cells."""
        report_cell(genotype, run_dir)

    def retrain_presets(self, dataset, imagenet_layout=False):
        """The DARTS paper's protocols (``cnn/train.py`` for CIFAR, ``cnn/train_imagenet.py``), small ones on digits."""
        return RETRAIN_PRESETS["imagenet" if imagenet_layout else dataset]

    def build_network(self, genotype, cfg, num_classes, in_channels, image_size):
        cls = NetworkImageNet if cfg.imagenet_layout else NetworkCIFAR
        # The auxiliary head pools 5x5 windows of the maps after the second reduction (image/4, or image/32 for
        # the ImageNet layout), as in the reference code.
        aux_size = image_size // (32 if cfg.imagenet_layout else 4)
        if cfg.auxiliary and aux_size < 5:
            raise ConfigError(f"--auxiliary needs at least 5x5 feature maps at the head, but {image_size}x{image_size}"
                              f" images give {aux_size}x{aux_size}; use --no-auxiliary")
        return cls(cfg.init_channels, num_classes, cfg.layers, cfg.auxiliary, genotype, in_channels=in_channels)


def report_cell(genotype: Genotype, run_dir: str) -> dict:
    """Compare the cell with DARTS_V2 in the CIFAR setting (36 channels, 20 cells, parameters without the
    auxiliary head, multiply-adds at 32x32), save it as ``comparison.json``, and draw both cells."""
    rows = {}
    for name, g in (("this search", genotype), ("DARTS_V2", get_genotype("DARTS_V2"))):
        with torch.device("meta"):  # shapes only: counting needs no arithmetic and no memory
            net = NetworkCIFAR(36, 10, 20, False, g)
        rows[name] = {"params": count_parameters(net), "macs": count_macs(net, (3, 32, 32), device="meta")}
    ours, ref = rows["this search"], rows["DARTS_V2"]
    log.info("CIFAR setting (36 channels, 20 cells): this cell %.2fM params, %.0fM MACs; DARTS_V2 %.2fM params, "
             "%.0fM MACs", ours["params"] / 1e6, ours["macs"] / 1e6, ref["params"] / 1e6, ref["macs"] / 1e6)
    atomic_write_text(os.path.join(run_dir, "comparison.json"), json.dumps({"setting": "cifar", **rows}, indent=1) + "\n")
    try:
        from ..plot import plot_genotype

        paths = plot_genotype(genotype, run_dir)
        log.info("cell drawings: %s", ", ".join(os.path.basename(p) for p in paths))
    except DartsError as e:  # no graphviz and no matplotlib: the search itself succeeded
        log.warning("cell drawing skipped: %s", e)
    return rows
