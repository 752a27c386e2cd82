"""DARTS (Liu, Simonyan, Yang, "DARTS: Differentiable Architecture Search", ICLR 2019): softmax over α (Eq. 2).

Every hook of :class:`darts.methods.SearchMethod` already does what DARTS does; this file only registers it.
"""
from __future__ import annotations

from .base import SearchMethod
from .registry import register_method


@register_method
class DARTS(SearchMethod):
    """Op weights ``softmax(α)`` (Eq. 2), the DARTS discretizer, and the paper's hyperparameters."""

    name = "darts"
    paper = "Liu et al., DARTS: Differentiable Architecture Search, ICLR 2019"
