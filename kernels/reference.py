"""The reference mixed op: the specification every fused kernel is tested against."""
from __future__ import annotations

import torch


def mixed_op_reference(mixed_op, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``Σ_k weights[k] · op_k(x)`` over ``mixed_op.candidates`` (DARTS Eq. 2), one PyTorch module per op.

    Args:
        mixed_op: a :class:`darts.search.MixedOp` (its ``candidates`` ModuleList, one module per primitive).
        x: ``(B, C, H, W)`` input of the edge.
        weights: ``(K,)`` op weights of this edge, e.g. a row of softmax(α).
    Returns:
        ``(B, C, H/s, W/s)`` with ``s`` the edge's stride.
    """
    out = None
    for w, op in zip(weights, mixed_op.candidates):
        y = w * op(x)
        out = y if out is None else out + y
    return out
