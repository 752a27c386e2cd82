"""Multi-trial search strategies (``--strategy``) and the evaluators that score their cells (``--evaluator``).

A strategy proposes discrete cells of a space, through the space's encoding, and learns from their scores; it does
not touch a supernet. Built in: ``random``, ``rea`` (regularised evolution), ``reinforce``, ``ls`` (local search)
``bo`` (Optuna's TPE, an optional extra) and ``grid`` (every cell once). Add your own in a file of yours (see :class:`Strategy`).
"""
from .base import STRATEGIES, CellEncoding, Strategy, register_strategy
from .evaluators import EVALUATORS, EvalContext, Evaluator, register_evaluator

from .random_search import RandomSearch  # noqa: E402  (registers "random")
from .evolution import RegularizedEvolution  # noqa: E402  (registers "rea")
from .reinforce import Reinforce  # noqa: E402  (registers "reinforce")
from .local_search import LocalSearch  # noqa: E402  (registers "ls")
from .bayesopt import BayesianOptimisation  # noqa: E402  (registers "bo")
from .grid import GridSearch  # noqa: E402  (registers "grid")

__all__ = ["STRATEGIES", "EVALUATORS", "CellEncoding", "Strategy", "Evaluator", "EvalContext", "register_strategy",
           "register_evaluator", "RandomSearch", "RegularizedEvolution", "Reinforce", "LocalSearch",
           "BayesianOptimisation", "GridSearch"]
