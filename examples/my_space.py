"""A search space of your own, used without editing the library: a chain of mixed ops.

    darts-forge search --plugin examples/my_space.py --space chain --chain-nodes 3

Each cell is a chain: node i applies one op to node i-1 (one edge per node), and ``cells`` such cells are stacked.
The space declares its primitives, its search network, its genotype format and its discrete network; every search
method runs in it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from darts import GenotypeError, SearchSpace, build_op, get_op_spec, option, register_space
from darts.run.checkpoint import atomic_write_text
from darts.supernet import SupernetBase

FORMAT = "chain-genotype/1"


@dataclass(frozen=True)
class ChainGenotype:
    """The op of every node of the chain, in order."""

    chain: tuple[str, ...]
    primitives: tuple[str, ...] | None = field(default=None, compare=False)

    @property
    def normal(self):  # the (op, input) pairs the collapse statistics count
        return tuple((op, i) for i, op in enumerate(self.chain))

    def ops(self) -> set[str]:
        return set(self.chain)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "chain": list(self.chain),
                "primitives": list(self.primitives) if self.primitives else None}

    def save(self, path: str) -> None:
        atomic_write_text(path, json.dumps(self.to_dict()) + "\n")

    def __str__(self) -> str:
        return " -> ".join(self.chain)


class ChainSupernet(SupernetBase):
    """Stem, ``cells`` cells of ``nodes`` mixed ops in a chain (all cells share one α), pooling, classifier."""

    def __init__(self, C, num_classes, cells, nodes, primitives, in_channels, kernels, method):
        super().__init__(method, primitives, kernels)
        self.C, self.nodes = C, nodes
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.cells = nn.ModuleList(nn.ModuleList(method.build_edge(C, 1, self.primitives) for _ in range(nodes))
                                   for _ in range(cells))
        self.classifier = nn.Linear(C, num_classes)
        self.alphas = self.make_alphas({"chain": nodes})

    def node_in_degrees(self):
        return [1] * self.nodes

    def genotype(self, max_skip=None):
        (w,) = self.strengths()
        allowed = [k for k, p in enumerate(self.primitives) if not get_op_spec(p).is_zero]
        return ChainGenotype(tuple(self.primitives[max(allowed, key=lambda k: float(row[k]))] for row in w),
                             self.primitives)

    def forward(self, x):
        self._dispatch(x)
        (w,), (c,) = self.edge_weights(), self.edge_coefficients()
        h = self.stem(x)
        for cell in self.cells:
            for i, edge in enumerate(cell):
                h = edge(h, w[i]) * (1 if c is None else c[i])
        return self.classifier(h.mean((2, 3)))


class ChainNetwork(nn.Module):
    """The discrete network of a chain genotype: the chosen op of every node, ``layers`` times."""

    def __init__(self, genotype: ChainGenotype, C: int, num_classes: int, layers: int, in_channels: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.ops = nn.Sequential(*[build_op(op, C, 1, True) for _ in range(layers) for op in genotype.chain])
        self.classifier = nn.Linear(C, num_classes)
        self.drop_path_prob = 0.0

    def forward(self, x):
        return self.classifier(self.ops(self.stem(x)).mean((2, 3))), None


@register_space
class ChainSpace(SearchSpace):
    """Chains of mixed ops over a few DARTS primitives."""

    name = "chain"
    paper = "an example space: a chain of mixed ops"
    primitives = ("none", "skip_connect", "sep_conv_3x3", "max_pool_3x3")
    genotype_format = FORMAT
    flag_prefix = "chain"

    @dataclass
    class Options:
        nodes: int = option(3, "nodes (mixed ops) per cell", positive=True, max=64)
        cells: int = option(2, "cells stacked", positive=True, max=64)

    def cell_channels(self, C):
        return [C]

    def build_supernet(self, *, C, num_classes, in_channels, primitives, method, kernels="auto"):
        return ChainSupernet(C, num_classes, self.options.cells, self.options.nodes, self.check_primitives(primitives),
                             in_channels, kernels, method)

    def genotype_from_dict(self, d):
        if d.get("format") != FORMAT or not isinstance(d.get("chain"), list) or not d["chain"]:
            raise GenotypeError(f"a chain genotype needs 'format': {FORMAT!r} and a non-empty 'chain' list")
        for op in d["chain"]:
            get_op_spec(op)
        return ChainGenotype(tuple(d["chain"]), tuple(d["primitives"]) if d.get("primitives") else None)

    def build_network(self, genotype, cfg, num_classes, in_channels, image_size):
        return ChainNetwork(genotype, cfg.init_channels, num_classes, cfg.layers, in_channels)
