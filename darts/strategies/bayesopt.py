"""Bayesian optimisation over the cell encoding with Optuna's tree-structured Parzen estimator (Bergstra et al.,
"Algorithms for Hyper-Parameter Optimization", NeurIPS 2011), each position a categorical parameter. Optuna is an
optional extra: ``pip install 'darts-forge[bo]'``.

Every proposal rebuilds the sampler's study from the evaluations so far, with a seed derived from the run's seed and
the number of evaluations: the strategy's whole state is its history, so a resumed run proposes what an
uninterrupted one would. Optuna's TPE defaults hold (10 random start-up trials), unless changed below.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from ..errors import ConfigError
from ..options import option
from .base import Strategy, register_strategy


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("--strategy bo needs Optuna: pip install 'darts-forge[bo]' (or pip install optuna)") \
            from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    return optuna


@register_strategy
class BayesianOptimisation(Strategy):
    name = "bo"
    paper = "Bergstra et al., Algorithms for Hyper-Parameter Optimization, NeurIPS 2011 (TPE); Akiba et al., " \
            "Optuna, KDD 2019"
    flag_prefix = "bo"

    @dataclass
    class Options:
        startup: int = option(10, "random cells before the TPE model proposes (Optuna's n_startup_trials: 10)",
                              nonneg=True, max=10**6)
        multivariate: bool = option(False, "model the positions jointly (Optuna's multivariate TPE)")

    def setup(self):
        _optuna()

    def begin(self, encoding, seed):
        super().begin(encoding, seed)
        self.seed = seed
        self.history: list[tuple[list[int], float]] = []

    def ask(self):
        optuna = _optuna()
        dists = {f"x{i}": optuna.distributions.CategoricalDistribution(list(range(s)))
                 for i, s in enumerate(self.encoding.sizes)}
        sampler = optuna.samplers.TPESampler(n_startup_trials=self.options.startup, seed=self.seed * 1_000_003 +
                                             len(self.history), multivariate=self.options.multivariate)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        for x, score in self.history:
            value = score if score != float("-inf") else -1e30  # Optuna wants finite values
            study.add_trial(optuna.trial.create_trial(params={f"x{i}": v for i, v in enumerate(x)},
                                                      distributions=dists, value=value))
        trial = study.ask(dists)
        return [int(trial.params[f"x{i}"]) for i in range(len(self.encoding.sizes))]

    def tell(self, x, score):
        self.history.append((list(x), float(score)))

    def state_dict(self):
        return {**super().state_dict(), "seed": self.seed, "history": [[list(x), s] for x, s in self.history]}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.seed = int(state["seed"])
        self.history = [(list(x), float(s)) for x, s in state["history"]]
