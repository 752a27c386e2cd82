"""The reference mixed op, search cell and BN-weighted sum: the specifications every fused path is tested against."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def mixed_op_reference(mixed_op, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``Σ_k weights[k] · op_k(x)`` over ``mixed_op.candidates`` (DARTS Eq. 2), one PyTorch module per op.

    Args:
        mixed_op: a mixed op (:class:`kernels.interface.MixedOpLike`: its ``candidates``, one module per primitive).
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


def cell_reference(cell, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                   coefficients: torch.Tensor | None = None) -> torch.Tensor:
    """A search cell, edge by edge: node ``i`` is ``Σ_j c_ij · edge_ij(h_j, w_ij)`` over every earlier node ``j``.

    Args:
        cell: a search cell (:class:`kernels.interface.SearchCellLike`: ``preprocess``, ``edges``, ``steps``,
            ``multiplier``).
        s0, s1: outputs of the two previous cells, ``(B, C_pp, H', W')`` and ``(B, C_p, H, W)``.
        weights: ``(edges, K)`` op weights of the cell type.
        coefficients: None (``c`` = 1), or ``(edges,)`` factors on the edge outputs (PC-DARTS's edge
            normalisation); the edges may be any module ``edge(h, weights_row)`` a search method builds.
    Returns:
        ``(B, multiplier·C, H/s, W/s)``: the last ``multiplier`` nodes concatenated.
    """
    states = list(cell.preprocess(s0, s1))
    offset = 0
    for _ in range(cell.steps):
        s = None
        for j, h in enumerate(states):
            y = cell.edges[offset + j](h, weights[offset + j])
            if coefficients is not None:
                y = coefficients[offset + j] * y
            s = y if s is None else s + y
        offset += len(states)
        states.append(s)
    return torch.cat(states[-cell.multiplier :], dim=1)


def bn_weighted_sum_reference(ys, weights: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``Σ_k weights[k] · BN(ys[k])`` with non-affine, batch-statistics BatchNorm (the DARTS op tails, Eq. 2).

    Args:
        ys: K tensors ``(B, C, H, W)`` (a list, or one ``(K, B, C, H, W)`` tensor).
        weights: ``(K,)``.
        eps: BatchNorm epsilon.
    Returns:
        ``(B, C, H, W)``; BN normalises each channel of each ``ys[k]`` by its biased batch variance.
    """
    out = None
    for w, y in zip(weights, ys):
        t = w * F.batch_norm(y, None, None, training=True, eps=eps)
        out = t if out is None else out + t
    return out
