"""Evaluation networks built from a genotype: NetworkCIFAR and NetworkImageNet (DARTS Sec. 3.2-3.3).

Built exactly as the original ``cnn/model.py``: same stems, reduction cells at ``layers//3`` and
``2*layers//3``, FactorizedReduce preprocessing after a reduction, the auxiliary head after cell ``2*layers//3``,
drop path on every non-identity op, and the same module names, so the original checkpoints load with
``strict=True`` (see :mod:`darts.compat`). Any valid genotype builds: any number of nodes, any concat list, any
registered op.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .genotype import Genotype
from .ops import FactorizedReduce, Identity, ReLUConvBN, build_op


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples of ``x`` (B, C, H, W) with probability ``drop_prob``, scaling the rest by 1/keep
    (FractalNet's drop path as used by NASNet and DARTS). Out of place, unlike the original."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.size(0), 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask


class Cell(nn.Module):
    """A discrete cell: each intermediate node sums the ops of its edges (two in the DARTS format) on earlier nodes;
    the output concatenates ``concat``."""

    def __init__(self, genotype: Genotype, C_prev_prev: int, C_prev: int, C: int, reduction: bool,
                 reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(C_prev_prev, C)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0)
        cell = "reduce" if reduction else "normal"
        edges = genotype.edges(cell)
        self._concat = list(getattr(genotype, cell + "_concat"))
        self.multiplier = len(self._concat)
        self._indices = [j for _, j, _ in edges]
        self._nodes = [n for _, _, n in edges]
        # Only ops that read a cell input stride in a reduction cell.
        self._ops = nn.ModuleList(build_op(op, C, 2 if reduction and j < 2 else 1, True) for op, j, _ in edges)

    def forward(self, s0, s1, drop_prob: float):
        states = {0: self.preprocess0(s0), 1: self.preprocess1(s1)}
        for k, op in enumerate(self._ops):
            h = op(states[self._indices[k]])
            if self.training and drop_prob > 0.0 and not isinstance(op, Identity):
                h = drop_path(h, drop_prob)
            node = self._nodes[k]
            states[node] = states[node] + h if node in states else h
        return torch.cat([states[i] for i in self._concat], dim=1)


class AuxiliaryHeadCIFAR(nn.Module):
    """Auxiliary classifier on the 8x8 maps after cell 2*layers//3 (weight 0.4 in the loss)."""

    def __init__(self, C: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),  # 8x8 -> 2x2
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class AuxiliaryHeadImageNet(nn.Module):
    """Auxiliary classifier on the 14x14 maps; no BN after the 2x2 conv, as in the paper's experiments."""

    def __init__(self, C: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=2, padding=0, count_include_pad=False),
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class _EvalNetwork(nn.Module):
    """Shared cell stack of the two evaluation networks."""

    def _build_cells(self, genotype, layers, C_prev_prev, C_prev, C_curr, reduction_prev):
        self.cells = nn.ModuleList()
        C_aux = C_prev
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            cell = Cell(genotype, C_prev_prev, C_prev, C_curr, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, cell.multiplier * C_curr
            if i == 2 * layers // 3:
                C_aux = C_prev
        return C_prev, C_aux

    def _cells_forward(self, s0, s1):
        logits_aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self._aux_pos and self._auxiliary and self.training:
                logits_aux = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return logits, logits_aux


class NetworkCIFAR(_EvalNetwork):
    """The CIFAR evaluation network (36 channels, 20 cells in the paper).

    ``forward(x)`` returns ``(logits, logits_aux)``; ``logits_aux`` is None unless training with the auxiliary
    head. Set ``drop_path_prob`` each epoch (the trainer ramps it linearly).
    """

    def __init__(self, C: int, num_classes: int, layers: int, auxiliary: bool, genotype: Genotype,
                 in_channels: int = 3, stem_multiplier: int = 3):
        super().__init__()
        genotype.validate()
        self._layers, self._auxiliary, self._aux_pos = layers, auxiliary, 2 * layers // 3
        self.drop_path_prob = 0.0
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
        C_prev, C_aux = self._build_cells(genotype, layers, C_curr, C_curr, C, False)
        if auxiliary:
            self.auxiliary_head = AuxiliaryHeadCIFAR(C_aux, num_classes)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def forward(self, x):
        s = self.stem(x)
        return self._cells_forward(s, s)


class NetworkImageNet(_EvalNetwork):
    """The ImageNet mobile-setting network (48 channels, 14 cells): three stride-2 stem convs, 224 -> 28."""

    def __init__(self, C: int, num_classes: int, layers: int, auxiliary: bool, genotype: Genotype,
                 in_channels: int = 3):
        super().__init__()
        genotype.validate()
        self._layers, self._auxiliary, self._aux_pos = layers, auxiliary, 2 * layers // 3
        self.drop_path_prob = 0.0
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, C // 2, kernel_size=3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        C_prev, C_aux = self._build_cells(genotype, layers, C, C, C, True)
        if auxiliary:
            self.auxiliary_head = AuxiliaryHeadImageNet(C_aux, num_classes)
        # The original uses AvgPool2d(7), identical at 224x224; adaptive pooling also serves other sizes.
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def forward(self, x):
        s0 = self.stem0(x)
        s1 = self.stem1(s0)
        return self._cells_forward(s0, s1)


def count_parameters(model: nn.Module) -> int:
    """Parameters as the papers count them: every parameter whose name contains ``auxiliary`` is excluded
    (the original ``utils.count_parameters_in_MB``, which reports this number / 1e6)."""
    return sum(p.numel() for n, p in model.named_parameters() if "auxiliary" not in n)
