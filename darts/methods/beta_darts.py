"""β-DARTS (Ye et al., "β-DARTS: Beta-Decay Regularization for Differentiable Architecture Search", CVPR 2022):
DARTS with the β-continuous regulariser of α, which keeps the softmax of every edge from sharpening early.

The authors' code (``optimizers/darts/architect.py`` of Sunshine-Ye/Beta-DARTS) adds, to the α step's validation
loss, ``λ_e · mean_edges logsumexp(α_edge)`` over the rows of all cell types, with ``λ_e = 0.5 · e`` at epoch ``e``
(counted from 0: ``0 + 50 * epoch / 100``), so the weight grows linearly over the search. The same term is
``--beta-decay RATE`` (``λ_e = RATE · e``) with any other softmax method.
"""
from __future__ import annotations

import torch

from .darts import DARTS
from .registry import register_method


def beta_loss(alphas) -> torch.Tensor:
    """``mean over every edge (row) of every cell type of logsumexp(α_row)``: the β-continuous term (Eq. 9)."""
    rows = torch.cat([a.reshape(-1, a.shape[-1]) for a in alphas])
    return torch.logsumexp(rows, dim=-1).mean()


class BetaDecay:
    """The regulariser of ``--beta-decay RATE``: ``RATE · epoch · beta_loss(α)``; :meth:`set_epoch` each epoch."""

    def __init__(self, rate: float):
        self.rate, self.epoch = rate, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def weight(self) -> float:
        return self.rate * self.epoch

    def __call__(self, model) -> torch.Tensor | None:
        w = self.weight()
        return None if w == 0 else w * beta_loss(model.arch_parameters())


@register_method
class BetaDARTS(DARTS):
    """DARTS with the β-decay regulariser at the authors' rate (``--beta-decay 0.5``); see the module docstring."""

    name = "beta-darts"
    paper = "Ye et al., β-DARTS: Beta-Decay Regularization for Differentiable Architecture Search, CVPR 2022"
    flag_prefix = ""
    presets = {"paper": dict(beta_decay=0.5), "small": dict(beta_decay=0.5)}
