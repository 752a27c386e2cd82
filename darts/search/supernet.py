"""The DARTS supernet (Liu et al., 2019, Sec. 2.1-2.2): search cells of mixed ops and the α that weight them.

Layout as the original ``cnn/model_search.py``: a 3x3 conv stem with ``stem_multiplier * C`` channels, ``layers``
cells with reduction cells at ``layers//3`` and ``2*layers//3`` (channels doubled there), global average
pooling and a linear classifier. Normal cells share one α, reduction cells another.
"""
from __future__ import annotations

import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

from kernels import get_cell_impl, resolve_kernels

from ..genotype import Genotype, derive_genotype, num_edges
from ..ops import FactorizedReduce, ReLUConvBN, check_primitives
from .mixed_op import MixedOp

log = logging.getLogger(__name__)


class ArchParameters(nn.Module):
    """The architecture parameters α: one ``(edges, K)`` tensor per cell type, initialised as 1e-3·N(0, 1)."""

    def __init__(self, edges: int, num_ops: int):
        super().__init__()
        self.normal = nn.Parameter(1e-3 * torch.randn(edges, num_ops))
        self.reduce = nn.Parameter(1e-3 * torch.randn(edges, num_ops))


class SearchCell(nn.Module):
    """A cell of the supernet: every intermediate node sums a mixed op on every earlier node."""

    def __init__(self, steps, multiplier, C_prev_prev, C_prev, C, reduction, reduction_prev, primitives):
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
                self.edges.append(MixedOp(C, stride, primitives))
        self.impl = "reference"  # set by Supernet.set_kernels

    def forward(self, s0, s1, weights):
        """``s0``, ``s1``: outputs of the two previous cells; ``weights``: (edges, K). Returns (B, m·C, H, W).

        The cell's sum over edges and ops is computed by the implementation chosen with ``set_kernels`` (the
        reference loop is :func:`kernels.reference.cell_reference`).
        """
        return get_cell_impl(self.impl)(self, s0, s1, weights)


class Supernet(nn.Module):
    """The search network.

    Args:
        C: initial channels (16 in the paper).
        num_classes: classifier outputs.
        layers: number of cells (8 in the paper).
        primitives: the ordered search space (columns of α).
        steps: intermediate nodes per cell (4).
        multiplier: nodes concatenated into a cell's output (4).
        stem_multiplier: stem channels are ``stem_multiplier * C`` (3).
        in_channels: image channels (3 for RGB, 1 for digits).
        kernels: mixed-op implementation, ``auto`` | ``reference`` | ... (see :mod:`kernels`).

    The stem's BatchNorm is affine as in the reference code; every BatchNorm inside the cells is non-affine.
    ``forward`` returns logits only: the supernet does not own its loss.
    """

    def __init__(self, C: int, num_classes: int, layers: int, primitives, steps: int = 4, multiplier: int = 4,
                 stem_multiplier: int = 3, in_channels: int = 3, kernels: str = "auto"):
        super().__init__()
        self.primitives = check_primitives(primitives)
        self.steps, self.multiplier = steps, multiplier
        self.kernels = kernels
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
                              self.primitives)
            self.cells.append(cell)
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, multiplier * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)
        self.alphas = ArchParameters(num_edges(steps), len(self.primitives))
        self._impl_device = None

    # -- parameters -----------------------------------------------------------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        """α of the normal and the reduction cell, in that order."""
        return [self.alphas.normal, self.alphas.reduce]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every other parameter, in registration order (stable across runs, so optimizer state lines up)."""
        return [p for n, p in self.named_parameters() if not n.startswith("alphas.")]

    def named_weight_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if not n.startswith("alphas.")]

    # -- relaxation -----------------------------------------------------------------------------------
    def edge_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Op weights of every edge from α: softmax over the ops (DARTS Eq. 2). Shapes (edges, K) each."""
        return F.softmax(self.alphas.normal, dim=-1), F.softmax(self.alphas.reduce, dim=-1)

    def genotype(self, max_skip: int | None = None) -> Genotype:
        """The discrete cell that α encodes now (the DARTS rule, :func:`darts.genotype.derive_genotype`)."""
        with torch.no_grad():
            wn, wr = self.edge_weights()
        return derive_genotype(wn, wr, self.primitives, self.steps, self.multiplier, max_skip=max_skip)

    # -- forward --------------------------------------------------------------------------------------
    def set_kernels(self, kernels: str, device=None) -> str:
        """Choose the mixed-op and cell implementation for ``device`` (default: where the model lives); returns it.

        Raises :class:`darts.errors.ConfigError` for ``triton`` where Triton cannot run.
        """
        device = device if device is not None else self.stem[0].weight.device
        impl = resolve_kernels(kernels, torch.device(device))
        self.kernels = kernels
        for m in self.modules():
            if isinstance(m, (MixedOp, SearchCell)):
                m.impl = impl
        self._impl_device = torch.device(device)
        return impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, in_channels, H, W) with H, W divisible by 4. Returns logits (B, num_classes)."""
        if self._impl_device != x.device:  # dispatch by device, once per device change
            self.set_kernels(self.kernels, x.device)
        w_normal, w_reduce = self.edge_weights()
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, w_reduce if cell.reduction else w_normal)
        out = self.global_pooling(s1)
        return self.classifier(out.flatten(1))
