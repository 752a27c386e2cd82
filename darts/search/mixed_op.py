"""The mixed op: one edge of the supernet, mixing every candidate op (DARTS Eq. 2).

The candidate modules live here; *how* the weighted sum is computed (reference loop or fused kernels) is an
implementation from :mod:`kernels`, chosen by the ``kernels`` setting. Inside a search cell the sum over all of a
node's edges is computed at once by the cell implementation of the same setting (:class:`SearchCell`), so that
what the edges share (the ReLU and pools of their input) is computed once.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from kernels import get_impl

from ..ops import build_op, get_op_spec


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
