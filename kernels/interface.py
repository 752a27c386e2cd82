"""What the kernels read of a search cell and of a mixed op: the interface is declared here, and the supernet's
modules (in :mod:`darts`) implement it. The kernels never import :mod:`darts`.

A **mixed op** (one edge, DARTS Eq. 2) exposes ``candidates``: one module per primitive, in the column order of the
op weights; each maps ``(B, C, H, W)`` to ``(B, C, H/s, W/s)``. A **search cell** exposes ``steps`` (intermediate
nodes), ``multiplier`` (nodes concatenated into the output), ``edges`` (the mixed op of every edge, in α row order:
node 0's two edges, node 1's three, ...) and ``preprocess(s0, s1) -> (h0, h1)`` (the two cell inputs, preprocessed).

The fused paths compute some candidates in their own way. A candidate module says what it is by its class
attribute ``kernel_kind`` (absent: run the module as it is):

* ``ZERO``: the output is exactly zero (``none``); skipped.
* ``IDENTITY``: the output is the input.
* ``FACTORIZED_REDUCE``: ReLU, then ``conv_1`` on the input and ``conv_2`` on it shifted by one pixel (both 1x1,
  stride 2), concatenated, then ``bn``; the module has those three attributes.

Two more are recognised by their structure: a pool followed by a non-affine BatchNorm (an ``nn.Sequential`` of the
two), and a module whose ``.op`` is an ``nn.Sequential`` that starts with a ReLU and ends with a non-affine
BatchNorm (the DARTS convs), whose ReLU is shared by the edges that read one input and whose BN tail fuses with the
weighted sum.
"""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import torch
import torch.nn as nn

ZERO = "zero"
IDENTITY = "identity"
FACTORIZED_REDUCE = "factorized_reduce"


def kind_of(module: nn.Module) -> str | None:
    """The ``kernel_kind`` a candidate module declares, or None."""
    return getattr(type(module), "kernel_kind", None)


@runtime_checkable
class MixedOpLike(Protocol):
    """One edge of a search cell: its candidate ops, in the column order of the op weights."""

    candidates: Sequence[nn.Module]


@runtime_checkable
class SearchCellLike(Protocol):
    """A search cell as the cell implementations read it."""

    steps: int
    multiplier: int
    edges: Sequence[nn.Module]

    def preprocess(self, s0: torch.Tensor, s1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...
