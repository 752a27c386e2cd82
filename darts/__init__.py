"""darts-forge: differentiable architecture search (DARTS and successors) on current PyTorch.

The public API: the op registry, genotypes and the discretizer, the supernet, the bilevel optimizer, and the
evaluation networks. Scripts (``train_search.py``, ``train_final.py``) are thin wrappers over
:func:`darts.search_run.run_search` and :func:`darts.final_run.run_final`.
"""
from .bilevel import BilevelOptimizer
from .errors import (CheckpointError, ConfigError, DartsError, DataError, GenotypeError, NonFiniteLossError,
                     UnknownOpError)
from .final import NetworkCIFAR, NetworkImageNet, count_parameters
from .genotype import Genotype, derive_genotype, load_genotype, parse_genotype_text
from .ops import DARTS_PRIMITIVES, OpSpec, build_op, get_op_spec, list_ops, register_op
from .search import Supernet

__version__ = "0.1.0"

__all__ = [
    "BilevelOptimizer", "CheckpointError", "ConfigError", "DartsError", "DataError", "GenotypeError",
    "NonFiniteLossError", "UnknownOpError", "NetworkCIFAR", "NetworkImageNet", "count_parameters", "Genotype",
    "derive_genotype", "load_genotype", "parse_genotype_text", "DARTS_PRIMITIVES", "OpSpec", "build_op",
    "get_op_spec", "list_ops", "register_op", "Supernet",
]
