"""What every search network shares, whatever its space: the mixed op (one edge, DARTS Eq. 2), the architecture
parameters α, and the base class that holds them with the search method and the ``--kernels`` dispatch.

The candidate modules live in the mixed op; *how* the weighted sum is computed (reference loop or fused kernels)
is an implementation chosen by the ``--kernels`` setting (:mod:`darts.dispatch`). Inside a search cell the sum over
all of a node's edges is computed at once by the cell implementation of the same setting, so that what the edges
share (the ReLU and pools of their input) is computed once.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .dispatch import get_impl, resolve_kernels
from .ops import build_op, check_primitives, get_op_spec


class MixedOp(nn.Module):
    """``Σ_k w_k · op_k(x)`` over the ops of a search space, for one edge.

    Args:
        C: channels of the edge's input and output.
        stride: 1, or 2 for edges that read a cell input in a reduction cell.
        primitives: the ordered op names (the columns of α).
        search_bn: append the non-affine BatchNorm to ``search_bn`` ops (DARTS); NAS-Bench-201's search cell
            runs its pools bare.
    Every BatchNorm inside is non-affine (DARTS Sec. 3.1: affine BN parameters would rescale the op outputs and
    confound α); ops registered with ``search_bn`` (the pools) get a non-affine BatchNorm appended.
    """

    uses_kernels = True  # its forward runs the --kernels implementation (set by SupernetBase.set_kernels)

    def __init__(self, C: int, stride: int, primitives: tuple[str, ...], search_bn: bool = True):
        super().__init__()
        self.primitives = primitives
        self.stride = stride
        self.candidates = nn.ModuleList()
        for name in primitives:
            op = build_op(name, C, stride, False)
            if search_bn and get_op_spec(name).search_bn:
                op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
            self.candidates.append(op)
        self.impl = "reference"  # set by Supernet.set_kernels

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``x``: (B, C, H, W); ``weights``: (K,) for the K primitives. Returns (B, C, H/stride, W/stride)."""
        return get_impl(self.impl)(self, x, weights)


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
        """Every architecture parameter: the α groups in order, then the extras, then a controller's (ENAS)."""
        params = [getattr(self, n) for n in (*self.groups, *self.extra_names)]
        controller = getattr(self, "controller", None)
        return params + (list(controller.parameters()) if controller is not None else [])


class SupernetBase(nn.Module):
    """What every search network shares, whatever its space: α in :class:`ArchParameters` (``self.alphas``), a
    search method (``self.method``), the ``--kernels`` dispatch, and the parameter lists the bilevel step uses.

    A space's network calls ``super().__init__(method, primitives, kernels)``, creates ``self.alphas`` with
    :meth:`make_alphas`, has a ``stem`` whose first module holds a weight, and implements ``node_in_degrees``,
    ``genotype`` and ``forward`` (calling :meth:`_dispatch` first).
    """

    def __init__(self, method, primitives, kernels: str = "auto"):
        super().__init__()
        self.method = method
        self.primitives = check_primitives(primitives)
        self.kernels = kernels
        self._impl_device = None
        self.projection = None  # (group, weights) -> weights: DARTS-PT's decided and removed ops (darts.selection)

    def make_alphas(self, groups: dict[str, int]) -> "ArchParameters":
        """The α of ``groups`` (cell type -> number of edges), with the method's extras, initial values and masks."""
        alphas = ArchParameters(groups, len(self.primitives), self.method.extra_arch_shapes(groups),
                                init=self.method.initial_alpha, masks=self.method.uses_op_mask)
        controller = self.method.build_controller()
        if controller is not None:
            alphas.controller = controller
        return alphas

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
        out = tuple(self.alphas.apply_mask(g, self.method.op_weights(self.alphas.group(g), g, self.training))
                    for g in self.alphas.groups)
        if self.projection is not None:
            out = tuple(self.projection(g, w) for g, w in zip(self.alphas.groups, out))
        return out

    def edge_coefficients(self) -> tuple[torch.Tensor | None, ...]:
        """The method's per-edge factors of every cell type (None for most methods)."""
        return tuple(self.method.edge_coefficients(self, g) for g in self.alphas.groups)

    def strengths(self) -> tuple[torch.Tensor, ...]:
        """The op strengths ``(edges, K)`` the discretizer reads, per cell type (softmax(α) for DARTS)."""
        with torch.no_grad():
            out = tuple(self.alphas.apply_mask(g, self.method.derive_weights(self, g)) for g in self.alphas.groups)
            if self.projection is not None:  # what DARTS-PT has decided
                out = tuple(self.projection(g, w) for g, w in zip(self.alphas.groups, out))
            return out

    def set_kernels(self, kernels: str, device=None) -> str:
        """Choose the mixed-op and cell implementation for ``device`` (default: where the model lives); returns it.

        Raises :class:`darts.errors.ConfigError` for ``triton`` where Triton cannot run.
        """
        device = device if device is not None else self.stem[0].weight.device
        impl = resolve_kernels(kernels, torch.device(device))
        self.kernels = kernels
        for m in self.modules():
            if getattr(type(m), "uses_kernels", False):  # mixed ops and search cells run the chosen implementation
                m.impl = impl
        self._impl_device = torch.device(device)
        return impl

    def _dispatch(self, x: torch.Tensor) -> None:
        if self._impl_device != x.device:  # dispatch by device, once per device change
            self.set_kernels(self.kernels, x.device)
