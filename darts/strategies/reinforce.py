"""REINFORCE over a factorised categorical policy (Williams, 1992), the NAS-Bench-201 paper's RL baseline as
AutoDL-Projects runs it (``exps/NATS-algos/reinforce.py``).

The policy is one vector of logits per position of the encoding (per edge in NAS-Bench-201), initialised to
``1e-3 · N(0, 1)``. Each step samples a cell, evaluates it (reward ``r``), updates the baseline ``b`` (an
exponential moving average with momentum 0.9, bias-corrected: numerator and denominator both averaged) and takes one
Adam step on ``−log p(cell) · (r − b)``, with ``b`` already including ``r`` (the authors' order). The result is the
best cell evaluated, not the policy's mode (the authors' second version).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..options import option
from .base import Strategy, register_strategy


class FactorisedPolicy(torch.nn.Module):
    """Independent categorical distributions, one per position: ``logits[i]`` has ``sizes[i]`` entries."""

    def __init__(self, sizes, generator: torch.Generator):
        super().__init__()
        self.logits = torch.nn.ParameterList(
            torch.nn.Parameter(1e-3 * torch.randn(s, generator=generator, dtype=torch.float32)) for s in sizes)

    def log_prob(self, x) -> torch.Tensor:
        """``log p(x) = Σ_i log softmax(logits_i)[x_i]``."""
        return sum(torch.log_softmax(l, 0)[int(v)] for l, v in zip(self.logits, x))

    def sample(self, generator: torch.Generator) -> list[int]:
        with torch.no_grad():
            return [int(torch.multinomial(torch.softmax(l, 0), 1, generator=generator)) for l in self.logits]


class MovingAverage:
    """AutoDL-Projects' ``ExponentialMovingAverage``: ``n ← m·n + (1−m)·v``, ``d ← m·d + (1−m)``, value ``n/d``."""

    def __init__(self, momentum: float):
        self.momentum, self.numerator, self.denominator = momentum, 0.0, 0.0

    def update(self, value: float) -> None:
        self.numerator = self.momentum * self.numerator + (1 - self.momentum) * value
        self.denominator = self.momentum * self.denominator + (1 - self.momentum)

    def value(self) -> float:
        return self.numerator / self.denominator


@register_strategy
class Reinforce(Strategy):
    name = "reinforce"
    paper = "Williams, Simple statistical gradient-following algorithms, 1992; as the RL baseline of Dong and Yang, " \
            "NAS-Bench-201, ICLR 2020"
    flag_prefix = "reinforce"

    @dataclass
    class Options:
        lr: float = option(0.5, "Adam learning rate of the policy's logits (AutoDL's NAS-Bench-201 runs: 0.5)",
                           positive=True)
        momentum: float = option(0.9, "momentum of the reward's moving-average baseline (AutoDL: 0.9)", min=0, max=1,
                                 max_exclusive=True)

    def begin(self, encoding, seed):
        super().begin(encoding, seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.policy = FactorisedPolicy(encoding.sizes, self.generator)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.options.lr)
        self.baseline = MovingAverage(self.options.momentum)

    def ask(self):
        return self.policy.sample(self.generator)

    def tell(self, x, score):
        if score == float("-inf"):  # a cell that could not be scored teaches the policy nothing
            return
        self.baseline.update(score)
        loss = -self.policy.log_prob(x) * (score - self.baseline.value())
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    def probabilities(self) -> list[list[float]]:
        """The policy's probability of every choice, by position."""
        return [torch.softmax(l.detach(), 0).tolist() for l in self.policy.logits]

    def state_dict(self):
        return {**super().state_dict(), "policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "baseline": [self.baseline.numerator, self.baseline.denominator],
                "generator": self.generator.get_state()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline.numerator, self.baseline.denominator = (float(v) for v in state["baseline"])
        self.generator.set_state(state["generator"])
