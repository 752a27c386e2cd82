"""darts-forge: differentiable architecture search (DARTS and successors) on current PyTorch.

Run a search and retrain its cell::

    import darts
    result = darts.search(dataset="digits", epochs=2, out="runs/s1")
    final = darts.retrain(result.genotype, epochs=10)

Plug in an op, a search method, a search space or a kernel from a file of your own (``register_op``,
``register_method``, ``register_space``, ``register_kernel``), loaded by ``--plugin FILE`` or a plain import.
"""
__version__ = "0.2.0"

from .api import profile, retrain, score_cells, search  # noqa: E402
from .export import export_run  # noqa: E402
from . import benchmarks, proxies, strategies  # noqa: E402,F401  (darts.benchmarks.NB201Table, darts.proxies.score)
from .bilevel import BilevelOptimizer
from .collapse import EARLY_STOPS
from .dispatch import KERNELS, register_kernel
from .errors import (CheckpointError, ConfigError, DartsError, DataError, DuplicateNameError, GenotypeError,
                     NonFiniteLossError, PluginError, UnknownNameError, UnknownOpError)
from .final import NetworkCIFAR, NetworkImageNet, count_parameters
from .genotype import Genotype, derive_genotype, load_genotype, parse_genotype_text
from .methods import METHODS, SearchMethod, get_method, list_methods, register_method
from .ops import DARTS_PRIMITIVES, OPS, OpSpec, build_op, get_op_spec, list_ops, register_op
from .options import option
from .plugins import load_plugin
from .registry import Registry
from .retrain import RetrainResult
from .search_run import SearchResult
from .spaces import SPACES, SearchSpace, Supernet, get_space, list_spaces, load_any_genotype, register_space
from .zoo import ZOO, get_genotype

__all__ = [
    "search", "retrain", "score_cells", "profile", "export_run", "SearchResult", "RetrainResult", "benchmarks", "proxies", "strategies",
    "register_op", "register_method", "register_space", "register_kernel", "load_plugin", "option", "Registry",
    "OPS", "METHODS", "SPACES", "KERNELS", "ZOO", "EARLY_STOPS",
    "SearchMethod", "SearchSpace", "get_method", "list_methods", "get_space", "list_spaces",
    "OpSpec", "build_op", "get_op_spec", "list_ops", "DARTS_PRIMITIVES",
    "Genotype", "derive_genotype", "load_genotype", "load_any_genotype", "parse_genotype_text", "get_genotype",
    "Supernet", "BilevelOptimizer", "NetworkCIFAR", "NetworkImageNet", "count_parameters",
    "DartsError", "ConfigError", "DataError", "GenotypeError", "CheckpointError", "NonFiniteLossError",
    "PluginError", "DuplicateNameError", "UnknownNameError", "UnknownOpError",
]
