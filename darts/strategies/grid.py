"""Exhaustive search: every cell of the space once, in the order of the encoding (the last position fastest). With
a zero-cost proxy as the evaluator this is a training-free search of a whole small space (NAS-Bench-201's 15,625
cells); ``--budget-evals`` larger than the space is cut to its size."""
from __future__ import annotations

from .base import Strategy, register_strategy


@register_strategy
class GridSearch(Strategy):
    name = "grid"
    paper = "exhaustive enumeration (the baseline every strategy is measured against on a tabular benchmark)"

    def begin(self, encoding, seed):
        super().begin(encoding, seed)
        self.next = 0

    def budget(self, evals: int) -> int:
        return min(evals, self.encoding.size())

    def ask(self):
        x, n = [], self.next
        for s in reversed(self.encoding.sizes):
            n, v = divmod(n, s)
            x.append(v)
        self.next += 1
        return x[::-1]

    def state_dict(self):
        return {**super().state_dict(), "next": self.next}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.next = int(state["next"])
