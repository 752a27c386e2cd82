"""DARTS- (Chu et al., "DARTS-: Robustly Stepping out of Performance Collapse Without Indicators", ICLR 2021):
an auxiliary skip connection on every edge, with a coefficient decayed to zero over the search.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..ops import FactorizedReduce, Identity
from ..options import option
from ..supernet import MixedOp
from .base import SearchMethod
from .registry import register_method


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


@register_method
class DARTSMinus(SearchMethod):
    """Plain DARTS softmax, plus the auxiliary skip whose coefficient decays from ``beta0`` to 0.

    Options:
        beta0: initial coefficient (1 in the paper).
        decay: ``linear`` (the paper's default) or ``cosine``.
    """

    name = "darts-"
    paper = "Chu et al., DARTS-: Robustly Stepping out of Performance Collapse Without Indicators, ICLR 2021"
    flag_prefix = "dartsminus"
    generic_cell = True

    @dataclass
    class Options:
        beta0: float = option(1.0, "initial coefficient of the auxiliary skip", nonneg=True)
        decay: str = option("linear", "decay of the coefficient to 0", choices=("linear", "cosine"))

    def setup(self):
        self.beta0, self.decay, self.beta = self.options.beta0, self.options.decay, self.options.beta0

    def build_edge(self, C, stride, primitives, search_bn=True):
        return AuxSkipMixedOp(C, stride, primitives, search_bn)

    def start_epoch(self, model, epoch, epochs):
        frac = epoch / epochs  # reaches 0 only after the last epoch, as β_t = β0 (1 - t/T)
        self.beta = self.beta0 * (1 - frac) if self.decay == "linear" else self.beta0 * 0.5 * (1 + math.cos(math.pi * frac))
        for m in model.modules():
            if isinstance(m, AuxSkipMixedOp):
                m.beta = self.beta
        return {"aux_skip_beta": self.beta}

    def describe(self):
        return f"darts- (auxiliary skip {self.beta0} -> 0, {self.decay})"
