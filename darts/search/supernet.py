"""The DARTS supernet (Liu et al., 2019, Sec. 2.1-2.2): search cells of mixed ops and the α that weight them.

Layout as the original ``cnn/model_search.py``: a 3x3 conv stem with ``stem_multiplier * C`` channels, ``layers``
cells with reduction cells at ``layers//3`` and ``2*layers//3`` (channels doubled there), global average
pooling and a linear classifier. Normal cells share one α, reduction cells another.
"""
from __future__ import annotations

import logging

import torch
import torch.nn as nn

from kernels import cell_reference, get_cell_impl, resolve_kernels

from ..genotype import Genotype, derive_genotype, num_edges
from ..ops import FactorizedReduce, ReLUConvBN, check_primitives
from .mixed_op import MixedOp

log = logging.getLogger(__name__)


class ArchParameters(nn.Module):
    """The architecture parameters: one ``(edges, K)`` α per cell type, initialised as 1e-3·N(0, 1) (or by the
    method's ``initial_alpha``), and any extra parameters a method adds (PC-DARTS's edge β), in a fixed order.

    Args:
        groups: cell type -> number of edges (``{"normal": 14, "reduce": 14}`` in DARTS), or one int for that
            DARTS layout.
        num_ops: K, the number of primitives.
        extra: name -> shape of method-specific parameters, created after the α.
        init: ``shape -> tensor``, the initial α (default ``1e-3 · N(0, 1)``).
        masks: also keep a boolean op mask per group (buffers ``mask_<group>``, all True at first; see
            :meth:`mask`).
    """

    def __init__(self, groups: dict[str, int] | int, num_ops: int, extra: dict[str, tuple[int, ...]] | None = None,
                 init=None, masks: bool = False):
        super().__init__()
        if isinstance(groups, int):
            groups = {"normal": groups, "reduce": groups}
        self.groups = tuple(groups)
        for name, edges in groups.items():
            value = init((edges, num_ops)) if init is not None else 1e-3 * torch.randn(edges, num_ops)
            self.register_parameter(name, nn.Parameter(value))
        self.extra_names = tuple(extra or {})
        for name, shape in (extra or {}).items():
            self.register_parameter(name, nn.Parameter(1e-3 * torch.randn(*shape)))
        self.masked = masks
        if masks:
            for name, edges in groups.items():
                self.register_buffer(f"mask_{name}", torch.ones(edges, num_ops, dtype=torch.bool))

    def group(self, name: str) -> nn.Parameter:
        """α of one cell type, ``(edges, K)``."""
        return getattr(self, name)

    def mask(self, name: str) -> torch.Tensor | None:
        """The op mask ``(edges, K)`` of one cell type (False: the op is pruned), or None without masks."""
        return getattr(self, f"mask_{name}") if self.masked else None

    def apply_mask(self, name: str, weights: torch.Tensor) -> torch.Tensor:
        """``weights`` with the pruned ops set to 0 and each edge renormalised over the ops it keeps (DrNAS
        ``process_step_vector``); unchanged without masks or while nothing is pruned."""
        mask = self.mask(name)
        if mask is None or bool(mask.all()):
            return weights
        kept = weights * mask
        return kept / kept.sum(-1, keepdim=True)

    def all(self) -> list[nn.Parameter]:
        """Every architecture parameter: the α groups in order, then the extras."""
        return [getattr(self, n) for n in (*self.groups, *self.extra_names)]


class SupernetBase(nn.Module):
    """What every search network shares, whatever its space: α in :class:`ArchParameters` (``self.alphas``), a
    search method (``self.method``), the ``--kernels`` dispatch, and the parameter lists the bilevel step uses.

    A space's network sets ``alphas``, ``method``, ``kernels``, ``primitives`` and ``_impl_device = None`` in its
    constructor, has a ``stem`` whose first module holds a weight, and implements ``node_in_degrees``,
    ``genotype`` and ``forward`` (calling :meth:`_dispatch` first).
    """

    def arch_parameters(self) -> list[nn.Parameter]:
        """α of every cell type, in order, then any parameters the method adds (PC-DARTS's edge β)."""
        return self.alphas.all()

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every other parameter, in registration order (stable across runs, so optimizer state lines up)."""
        return [p for n, p in self.named_parameters() if not n.startswith("alphas.")]

    def named_weight_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if not n.startswith("alphas.")]

    def edge_weights(self) -> tuple[torch.Tensor, ...]:
        """Op weights ``(edges, K)`` of every cell type: softmax(α) for DARTS (Eq. 2), or the method's relaxation
        (see :meth:`darts.methods.SearchMethod.op_weights`)."""
        return tuple(self.alphas.apply_mask(g, self.method.op_weights(self.alphas.group(g), g, self.training))
                     for g in self.alphas.groups)

    def edge_coefficients(self) -> tuple[torch.Tensor | None, ...]:
        """The method's per-edge factors of every cell type (None for most methods)."""
        return tuple(self.method.edge_coefficients(self, g) for g in self.alphas.groups)

    def strengths(self) -> tuple[torch.Tensor, ...]:
        """The op strengths ``(edges, K)`` the discretizer reads, per cell type (softmax(α) for DARTS)."""
        with torch.no_grad():
            return tuple(self.alphas.apply_mask(g, self.method.derive_weights(self, g)) for g in self.alphas.groups)

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

    def _dispatch(self, x: torch.Tensor) -> None:
        if self._impl_device != x.device:  # dispatch by device, once per device change
            self.set_kernels(self.kernels, x.device)


class SearchCell(nn.Module):
    """A cell of the supernet: every intermediate node sums a mixed op on every earlier node."""

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
        method: a :class:`darts.methods.SearchMethod` (default: plain DARTS): the relaxation of α, the edge
            module, and the per-edge coefficients.

    The stem's BatchNorm is affine as in the reference code; every BatchNorm inside the cells is non-affine.
    ``forward`` returns logits only: the supernet does not own its loss.
    """

    def __init__(self, C: int, num_classes: int, layers: int, primitives, steps: int = 4, multiplier: int = 4,
                 stem_multiplier: int = 3, in_channels: int = 3, kernels: str = "auto", method=None):
        super().__init__()
        from ..methods.base import SearchMethod  # not at module level: methods build on this package

        self.method = method if method is not None else SearchMethod()
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
                              self.primitives, self.method)
            self.cells.append(cell)
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, multiplier * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)
        groups = {"normal": num_edges(steps), "reduce": num_edges(steps)}
        self.alphas = ArchParameters(groups, len(self.primitives), self.method.extra_arch_shapes(groups),
                                     init=self.method.initial_alpha, masks=self.method.uses_op_mask)
        self._impl_device = None

    space = "darts"

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
