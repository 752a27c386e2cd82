"""Regularised (aging) evolution (Real et al., "Regularized Evolution for Image Classifier Architecture Search",
AAAI 2019, Alg. 1), as AutoDL-Projects runs it on NAS-Bench-201 (``exps/NATS-algos/regularized_ea.py``).

The first ``population`` evaluations are random cells. After that, each step draws ``sample`` members of the
population uniformly *with replacement*, mutates the best of them (one edge to another op: a random node, then a
random edge of it, as the authors' ``mutate_arch_func``), evaluates the child, appends it to the population and
removes the oldest member (aging: the population is a queue, not ranked).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..options import option
from .base import Strategy, register_strategy


@register_strategy
class RegularizedEvolution(Strategy):
    name = "rea"
    paper = "Real et al., Regularized Evolution for Image Classifier Architecture Search, AAAI 2019"
    flag_prefix = "rea"

    @dataclass
    class Options:
        population: int = option(10, "population size P (the NAS-Bench-201 paper's: 10)", positive=True, max=10**6)
        sample: int = option(3, "tournament sample size S (the NAS-Bench-201 paper's: 3)", positive=True, max=10**6)

    def setup(self):
        if self.options.sample > self.options.population:
            raise ConfigError(f"--rea-sample ({self.options.sample}) cannot exceed --rea-population "
                              f"({self.options.population})")

    def begin(self, encoding, seed):
        super().begin(encoding, seed)
        self.population: list[tuple[list[int], float]] = []  # oldest first

    def ask(self):
        if len(self.population) < self.options.population:
            return self.encoding.random(self.rng)
        sample = [self.rng.choice(self.population) for _ in range(self.options.sample)]
        parent = max(sample, key=lambda member: member[1])  # the first of equals, as Python's max
        return self.encoding.mutate(parent[0], self.rng)

    def tell(self, x, score):
        self.population.append((list(x), float(score)))
        if len(self.population) > self.options.population:
            self.population.pop(0)  # aging: the oldest dies, whatever its score

    def state_dict(self):
        return {**super().state_dict(), "population": [[list(x), s] for x, s in self.population]}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.population = [(list(x), float(s)) for x, s in state["population"]]
