"""SDARTS-RS (Chen and Hsieh, "Stabilizing Differentiable Architecture Search via Perturbation-based
Regularization", ICML 2020): random smoothing of α during the weight steps.
"""
from __future__ import annotations

import contextlib

import torch

from .base import SearchMethod


class SDARTSRS(SearchMethod):
    """The weights are trained at ``α + δ``, ``δ ~ U(−ε, ε)`` elementwise, drawn anew each weight step (Eq. 5); the
    α step is plain DARTS. Training the weights to work in a neighbourhood of α flattens the validation loss in α,
    which is what keeps DARTS from collapsing. ε grows linearly from ``epsilon_min`` to ``epsilon`` over the
    search, as in the authors' code (0.03 to 0.3).
    """

    name = "sdarts-rs"
    paper = "Chen and Hsieh, Stabilizing Differentiable Architecture Search via Perturbation-based " \
            "Regularization, ICML 2020"

    def __init__(self, epsilon: float = 0.3, epsilon_min: float = 0.03):
        if not 0 <= epsilon_min <= epsilon:
            raise ValueError(f"SDARTS needs 0 <= epsilon_min <= epsilon, got {epsilon_min}, {epsilon}")
        self.epsilon_max, self.epsilon_min, self.epsilon = epsilon, epsilon_min, epsilon_min

    def start_epoch(self, model, epoch, epochs):
        self.epsilon = self.epsilon_min + (self.epsilon_max - self.epsilon_min) * epoch / epochs
        return {"epsilon": self.epsilon}

    @contextlib.contextmanager
    def weight_step_perturbation(self, model):
        alphas = [model.alphas.group(g) for g in model.alphas.groups]
        saved = [a.detach().clone() for a in alphas]
        with torch.no_grad():
            for a in alphas:
                a.add_(torch.empty_like(a).uniform_(-self.epsilon, self.epsilon))
        try:
            yield
        finally:
            with torch.no_grad():
                for a, s in zip(alphas, saved):
                    a.copy_(s)

    def describe(self):
        return f"sdarts-rs (epsilon {self.epsilon_min} -> {self.epsilon_max})"
