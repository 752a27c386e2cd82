"""Local search (White, Nolen, Savani, "Exploring the Loss Landscape in Neural Architecture Search", UAI 2021), as
NASLib's ``LocalSearch`` optimiser runs it.

``init`` random cells first; the best becomes the current cell. Then its whole neighbourhood (every cell one edge
away, in random order) is evaluated one cell at a time; when it is exhausted, the search moves to the best cell
seen since the last start, or, if none beat the current cell (a local optimum), restarts from a new random cell.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..options import option
from .base import Strategy, register_strategy


@register_strategy
class LocalSearch(Strategy):
    name = "ls"
    paper = "White, Nolen and Savani, Exploring the Loss Landscape in Neural Architecture Search, UAI 2021"
    flag_prefix = "ls"

    @dataclass
    class Options:
        init: int = option(10, "random cells evaluated before the first climb (NASLib's num_init: 10)",
                           positive=True, max=10**6)

    def begin(self, encoding, seed):
        super().begin(encoding, seed)
        self.told = 0
        self.best = None      # (x, score): the best since the last (re)start
        self.chosen = None    # the cell whose neighbourhood is being evaluated
        self.queue: list[list[int]] = []
        self.pending = None   # what the next tell() is about: "init", "restart" or "neighbour"

    def ask(self):
        if self.told < self.options.init:
            self.pending = "init"
            return self.encoding.random(self.rng)
        if not self.queue and self.chosen is not None and self.best[1] <= self.chosen[1]:
            self.pending = "restart"  # a local optimum: nothing around the current cell is better
            return self.encoding.random(self.rng)
        if not self.queue:
            self.chosen = self.best
            self.queue = self.encoding.neighbours(self.chosen[0])
            self.rng.shuffle(self.queue)
        self.pending = "neighbour"
        return self.queue.pop()

    def tell(self, x, score):
        self.told += 1
        cell = (list(x), float(score))
        if self.pending == "restart":
            self.chosen = self.best = cell
            self.queue = self.encoding.neighbours(cell[0])
            self.rng.shuffle(self.queue)
        elif self.best is None or cell[1] > self.best[1]:
            self.best = cell

    def state_dict(self):
        return {**super().state_dict(), "told": self.told, "best": _pair(self.best), "chosen": _pair(self.chosen),
                "queue": [list(x) for x in self.queue], "pending": self.pending}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.told, self.pending = int(state["told"]), state["pending"]
        self.best, self.chosen = _unpair(state["best"]), _unpair(state["chosen"])
        self.queue = [list(x) for x in state["queue"]]


def _pair(cell):
    return None if cell is None else [list(cell[0]), cell[1]]


def _unpair(v):
    return None if v is None else (list(v[0]), float(v[1]))
