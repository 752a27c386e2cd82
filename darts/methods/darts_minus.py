"""DARTS- (Chu et al., "DARTS-: Robustly Stepping out of Performance Collapse Without Indicators", ICLR 2021):
an auxiliary skip connection on every edge, with a coefficient decayed to zero over the search.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..ops import FactorizedReduce, Identity
from ..search.mixed_op import MixedOp
from .base import SearchMethod


class AuxSkipMixedOp(nn.Module):
    """``Σ_k w_k op_k(x) + β_aux · skip(x)`` (Eq. 4): the auxiliary skip carries the gradient the residual path
    would otherwise make the candidate ``skip_connect`` win, so α of skip need not grow to carry it.

    ``skip`` is the identity, or a FactorizedReduce of its own on stride-2 edges; ``beta`` is set each epoch by
    :meth:`DARTSMinus.start_epoch` and is a constant, not a parameter.
    """

    def __init__(self, C: int, stride: int, primitives, search_bn: bool = True):
        super().__init__()
        self.mixed = MixedOp(C, stride, primitives, search_bn=search_bn)
        self.aux = Identity() if stride == 1 else FactorizedReduce(C, C, affine=False)
        self.beta = 1.0

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        y = self.mixed(x, weights)
        return y + self.beta * self.aux(x) if self.beta != 0 else y


class DARTSMinus(SearchMethod):
    """Plain DARTS softmax, plus the auxiliary skip whose coefficient decays from ``beta0`` to 0.

    Args:
        beta0: initial coefficient (1 in the paper).
        decay: ``linear`` (the paper's default) or ``cosine``.
    """

    name = "darts-"
    paper = "Chu et al., DARTS-: Robustly Stepping out of Performance Collapse Without Indicators, ICLR 2021"
    generic_cell = True

    def __init__(self, beta0: float = 1.0, decay: str = "linear"):
        if decay not in ("linear", "cosine"):
            raise ValueError(f"DARTS- decay must be linear or cosine, got {decay!r}")
        self.beta0, self.decay, self.beta = beta0, decay, beta0

    def build_edge(self, C, stride, primitives, search_bn=True):
        return AuxSkipMixedOp(C, stride, primitives, search_bn)

    def start_epoch(self, model, epoch, epochs):
        import math

        frac = epoch / epochs  # reaches 0 only after the last epoch, as β_t = β0 (1 - t/T)
        self.beta = self.beta0 * (1 - frac) if self.decay == "linear" else self.beta0 * 0.5 * (1 + math.cos(math.pi * frac))
        for m in model.modules():
            if isinstance(m, AuxSkipMixedOp):
                m.beta = self.beta
        return {"aux_skip_beta": self.beta}

    def describe(self):
        return f"darts- (auxiliary skip {self.beta0} -> 0, {self.decay})"
