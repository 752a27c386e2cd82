"""SDARTS-RS (Chen and Hsieh, "Stabilizing Differentiable Architecture Search via Perturbation-based
Regularization", ICML 2020): random smoothing of the op weights during the weight steps.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..ops import DARTS_PRIMITIVES
from ..options import option
from .base import SearchMethod
from .registry import register_method


def random_smoothing(probs: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Perturbed op weights ``(edges, K)`` from ``probs = softmax(α)``, as the authors' ``Random_alpha`` and ``clip``.

    ``w = clip(p + δ, 0, 1) / Σ_k clip(p + δ, 0, 1)`` per edge with ``δ ~ U(−ε, ε)`` elementwise; a row that clips to
    all zeros gets its largest perturbed entry set to 1 first, so every row is a distribution. Entries below
    ``−δ`` become exactly 0: at ε = 0.3 and α = 0 with 7 ops about a quarter of the ops are switched off.
    """
    w = probs + torch.empty_like(probs).uniform_(-epsilon, epsilon)
    top = w.argmax(dim=-1, keepdim=True)  # taken before the clip, as the authors do
    w = w.clamp(0.0, 1.0)
    empty = w.sum(dim=-1, keepdim=True) == 0
    w = torch.where(empty & (torch.arange(w.shape[-1], device=w.device) == top), torch.ones_like(w), w)
    return w / w.sum(dim=-1, keepdim=True)


@register_method
class SDARTSRS(SearchMethod):
    """The weight steps see ``random_smoothing(softmax(α), ε)`` instead of ``softmax(α)`` (Sec. 3.2), drawn anew each
    weight step and fed to the cells as they are (no second softmax); the α step, evaluation and the discretizer use
    plain ``softmax(α)``. Training the weights to work in a neighbourhood of the op weights flattens the validation
    loss in α, which keeps DARTS from collapsing.

    ε grows linearly with the 0-based epoch e of E, ``ε_e = epsilon_min + (epsilon − epsilon_min) · e / E``, as in the
    authors' ``train_search.py``: 0.03 at the first epoch and 0.03 + 0.27·(E−1)/E at the last (0.2946 for E = 50).
    """

    name = "sdarts-rs"
    paper = "Chen and Hsieh, Stabilizing Differentiable Architecture Search via Perturbation-based " \
            "Regularization, ICML 2020"
    flag_prefix = "sdarts"
    # the authors' DARTS space (sota/cnn/spaces.py, s5: their cells c10_s5_random / c10_s5_pgd) has no ``none``
    presets = {"darts": dict(primitives=tuple(p for p in DARTS_PRIMITIVES if p != "none"))}

    @dataclass
    class Options:
        epsilon: float = option(0.3, "final half-width of the uniform noise on the op weights", nonneg=True)
        epsilon_min: float = option(0.03, "initial half-width", nonneg=True)

    def setup(self):
        o = self.options
        if o.epsilon_min > o.epsilon:
            raise ConfigError(f"--sdarts-epsilon-min ({o.epsilon_min}) is larger than --sdarts-epsilon ({o.epsilon})")
        self.epsilon_max, self.epsilon_min, self.epsilon = o.epsilon, o.epsilon_min, o.epsilon_min
        self._smoothed: dict[str, torch.Tensor] | None = None

    def start_epoch(self, model, epoch, epochs):
        self.epsilon = self.epsilon_min + (self.epsilon_max - self.epsilon_min) * epoch / epochs
        return {"epsilon": self.epsilon}

    def op_weights(self, alpha, group, training):
        if training and self._smoothed is not None:
            return self._smoothed[group]
        return F.softmax(alpha, dim=-1)

    @contextlib.contextmanager
    def weight_step_perturbation(self, model):
        with torch.no_grad():  # constants of the weight step: α gets no gradient from it
            self._smoothed = {g: random_smoothing(F.softmax(model.alphas.group(g), dim=-1), self.epsilon)
                              for g in model.alphas.groups}
        try:
            yield
        finally:
            self._smoothed = None

    def describe(self):
        return f"sdarts-rs (epsilon {self.epsilon_min} -> {self.epsilon_max})"
